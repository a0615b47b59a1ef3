"""Dispatcher processes for the crash, drain and two-replica tests (see dispatcher.testing)."""

from dispatcher.testing import DispatcherProcess, WebhookBalancer, dispatcher_env, start_dispatcher

__all__ = ["DispatcherProcess", "WebhookBalancer", "dispatcher_env", "start_dispatcher"]
