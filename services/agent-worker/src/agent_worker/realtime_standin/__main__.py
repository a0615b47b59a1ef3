from agent_worker.realtime_standin import main

main()
