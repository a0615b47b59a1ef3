"""WebRTC tests: fixtures from ``livekit_emulator.rtc.testing`` (``netns``, ``rtc_emulator``)."""

pytest_plugins = ["livekit_emulator.rtc.testing"]
