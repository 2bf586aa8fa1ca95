"""Managed (lifecycle) nodes: the heavy model load told apart from readiness.

A ``ManagedNode`` is an ``rclpy.lifecycle.LifecycleNode`` whose subclass supplies four
steps: ``configure`` (load the model, build engines, publishers and services), ``activate``
(subscribe, start the worker), ``deactivate`` (stop both) and ``cleanup`` (drop the model:
``model_cache.release`` frees it once no node of the process holds it). With ``autostart``
(default) the constructor runs configure and activate, so ``ros2 run`` and ``imagebind-ros
run`` behave as before and a failed configure is the usual one-line ``StartupError``; with
``autostart:=false`` the node waits in ``unconfigured`` for a lifecycle manager (Nav2's, or
``ros2 lifecycle set``) calling ``~/change_state``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.timer import Timer

from imagebind_ros.model_cache import release
from imagebind_ros.ros.node_utils import STARTUP_ERRORS, StartupError, declare
from imagebind_ros.streams import Mailbox

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class ManagedNode(LifecycleNode):
    """Lifecycle plumbing; subclasses implement configure/activate/deactivate/cleanup.

    Conventions the helpers rely on: configure sets ``self.diagnostics`` (None while
    unconfigured), ``self.slow_services`` and ``self.shared``; a node with a worker has
    ``self._worker``, ``self.mailbox`` and ``self._subscribe``.
    """

    diagnostics: Any = None

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.autostart = declare(self, "autostart", True, "configure and activate at start; "
                                 "false: wait for a lifecycle manager", read_only=True)
        self._failure = ""
        self._activated: list[Any] = []

    # ------------------------------------------------------------------ subclass steps

    def configure(self) -> None:
        """Load the model and build what does not consume inputs (may raise StartupError)."""

    def activate(self) -> None:
        """Subscribe and start the worker."""

    def deactivate(self) -> None:
        """Stop the worker (subscriptions are removed by ``ManagedNode``)."""

    def cleanup(self) -> None:
        """Drop the model and what refers to it."""

    # ------------------------------------------------------------------ plumbing

    @property
    def unconfigured(self) -> bool:
        """True before configure and after cleanup (not while configuring)."""
        return self._state_machine.current_state[1] in ("unconfigured", "finalized")

    def start(self) -> None:
        """End of the subclass constructor: with ``autostart``, configure and activate, and
        raise StartupError (one line for ``run_node``) if configuring fails."""
        if not self.autostart:
            self.get_logger().info("unconfigured: waiting for a lifecycle manager "
                                   "(autostart is false)")
            return
        if self.trigger_configure() != SUCCESS:
            raise StartupError(self._failure or "configure failed")
        if self.trigger_activate() != SUCCESS:
            raise StartupError(self._failure or "activate failed")

    def _step(self, step: Callable[[], None], what: str) -> TransitionCallbackReturn:
        try:
            step()
        except STARTUP_ERRORS as e:
            self._failure = str(e)
            if not self.autostart:  # autostart: the constructor raises it instead
                self.get_logger().error(f"{what} failed: {e}")
            return FAILURE
        return SUCCESS

    def activate_subscriptions(self, subscribe: Callable[[], None]) -> None:
        """Run ``subscribe`` and remember what it created, for ``deactivate`` to remove:
        subscriptions and timers (``InputTopics``' graph check runs only while active)."""
        before = set(self.subscriptions) | set(self.timers)
        subscribe()
        self._activated = [e for e in (*self.subscriptions, *self.timers)
                                      if e not in before]

    def start_work(self, rates: dict[str, float]) -> None:
        """``activate`` of a node with a worker: a fresh mailbox, subscriptions, the thread."""
        self.mailbox = Mailbox(rates)
        self.activate_subscriptions(self._subscribe)  # type: ignore[attr-defined]
        self._worker.start()  # type: ignore[attr-defined]

    def stop_work(self) -> None:
        """``deactivate`` of a node with a worker: stop and join it (a timeout is logged)."""
        self._worker.stop(wake=self.mailbox.close)  # type: ignore[attr-defined]

    def destroy_configured(self, *entities: Any) -> None:
        """The common part of ``cleanup``: /diagnostics, the model-running services and
        ``entities`` (publishers, timers; None skipped) destroyed."""
        self.diagnostics.destroy()
        self.diagnostics = None
        self.slow_services.destroy()  # type: ignore[attr-defined]
        for e in entities:
            if isinstance(e, Timer):
                self.destroy_timer(e)
            elif e is not None:
                self.destroy_publisher(e)

    def release_model(self) -> None:
        """Drop ``self.shared`` (the node dropped what else refers to it) and let the
        process's cache free the model if no other node holds it."""
        if self.shared is not None:  # type: ignore[has-type]
            key = self.shared.key  # type: ignore[has-type]
            self.shared = None
            release(key)

    def destroy_node(self) -> None:
        if self.diagnostics is not None:  # configured
            self.slow_services.destroy()  # type: ignore[attr-defined]
        super().destroy_node()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._step(self.configure, "configure")

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._step(self.activate, "activate")
        return super().on_activate(state) if result == SUCCESS else result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.deactivate()
        for e in self._activated:
            if isinstance(e, Timer):
                self.destroy_timer(e)
            else:
                self.destroy_subscription(e)
        self._activated = []
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.cleanup()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if state.label == "active":
            self.on_deactivate(state)
        if state.label in ("active", "inactive"):
            self.cleanup()
        return SUCCESS
