"""A livekit-agents worker for the emulator's tests: its entrypoint records what it was given
in the file named by MARKER_DIR/<job id>.json and ends without joining the room.

    AGENT_NAME=travel-assistant MARKER_DIR=/tmp/x LIVEKIT_URL=ws://127.0.0.1:7880 \\
        LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=... python marker_agent.py start
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from livekit.agents import AgentServer, JobContext, JobExecutorType, cli

server = AgentServer(port=0, num_idle_processes=1, job_executor_type=JobExecutorType.THREAD)


@server.rtc_session(agent_name=os.environ["AGENT_NAME"])
async def entrypoint(ctx: JobContext) -> None:
    record = {
        "room": ctx.job.room.name,
        "room_sid": ctx.job.room.sid,
        "metadata": ctx.job.metadata,
        "job_id": ctx.job.id,
        "dispatch_id": ctx.job.dispatch_id,
        "agent_name": ctx.job.agent_name,
        "token_identity": ctx.token_claims().identity,
    }
    out = Path(os.environ["MARKER_DIR"]) / f"{ctx.job.id}.json"
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(out)
    ctx.shutdown("marker written")


if __name__ == "__main__":
    cli.run_app(server)
