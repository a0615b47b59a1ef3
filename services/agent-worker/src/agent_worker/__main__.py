from agent_worker.main import main

main()
