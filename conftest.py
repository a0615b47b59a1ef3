"""Root conftest: plugins every suite may use (pytest only honours pytest_plugins here).

The shared library's fixtures (redis_url, keys, redis_client) and the emulator's
(livekit_emulator, livekit_emulator_factory) load as pytest11 entry points; the WebRTC
fixtures (netns, rtc_emulator) are registered here.
"""

pytest_plugins = ["livekit_emulator.rtc.testing"]
