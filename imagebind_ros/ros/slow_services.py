"""Services that run the model, served off the node's executor.

A service that encodes (``~/set_labels``, ``~/embed_text``, ``~/set_prompt``, ``~/query``)
can take seconds; on the node's executor it would stall every subscription of the process
(all nodes of ``imagebind-ros run`` or the container). rclpy cannot hand one callback group
to another executor, so the services live on a hidden helper node (``_<node>_services``)
spun by a thread of its own, under the node's own service names. Each request runs on one
handler thread with a timeout (the reply then says it timed out; the work finishes in the
background) and a bounded number of requests in flight (more are refused at once, not
queued without end). Both failures are a ``success = False`` response with a clear message.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from collections.abc import Callable
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy._rclpy_pybind11 import RCLError
from rclpy.node import Node

from imagebind_ros.ros.node_utils import declare


def declare_service_parameters(node: Node) -> dict[str, Any]:
    """``services.timeout_s`` and ``services.max_pending`` of a node with slow services."""
    return {"timeout_s": declare(node, "services.timeout_s", 30.0, "a model-running service "
                                 "request answers 'timed out' after this many seconds",
                                 read_only=True),
            "max_pending": declare(node, "services.max_pending", 2, "model-running requests "
                                   "in flight (timed-out ones included); more are refused",
                                   read_only=True)}


class SlowServices:
    """The model-running services of ``node``, on a helper node and thread of their own."""

    def __init__(self, node: Node, timeout_s: float, max_pending: int) -> None:
        if timeout_s <= 0 or max_pending < 1:
            raise ValueError(f"services.timeout_s must be > 0 and services.max_pending >= 1 "
                             f"(got {timeout_s}, {max_pending})")
        self.timeout_s, self.max_pending = timeout_s, max_pending
        self._base = node.get_fully_qualified_name().rstrip("/")
        self._helper = Node(f"_{node.get_name()}_services", namespace=node.get_namespace(),
                            context=node.context, use_global_arguments=False,
                            start_parameter_services=False)
        self._executor = SingleThreadedExecutor(context=node.context)
        self._executor.add_node(self._helper)
        self._pool = ThreadPoolExecutor(max_pending, thread_name_prefix=node.get_name())
        self._pending = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=f"{node.get_name()}-services",
                                        daemon=True)
        self._thread.start()

    def create_service(self, srv_type: Any, name: str,
                       handler: Callable[[Any, Any], Any]) -> Any:
        """``~/<name>`` of the node, served by ``handler(request, response)`` off its
        executor."""
        def callback(req: Any, resp: Any) -> Any:
            return self.call(srv_type, handler, req, resp)

        return self._helper.create_service(srv_type, f"{self._base}/{name}", callback,
                                           callback_group=MutuallyExclusiveCallbackGroup())

    def call(self, srv_type: Any, handler: Callable[[Any, Any], Any], req: Any,
             resp: Any) -> Any:
        """Run ``handler`` on the pool within the limits; a failure response otherwise."""
        with self._lock:
            if self._pending >= self.max_pending:
                return _failure(resp, f"busy: {self._pending} requests still running (most "
                                f"{self.max_pending}); try again later")
            self._pending += 1
        future: Future[Any] = self._pool.submit(handler, req, srv_type.Response())
        future.add_done_callback(self._done)
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            return _failure(resp, f"timed out after {self.timeout_s:g} s (the request keeps "
                            "running and takes effect when it finishes)")
        except Exception as e:  # a bug in the handler: answer, do not kill the thread
            return _failure(resp, f"failed: {type(e).__name__}: {e}")

    def _done(self, _: Future[Any]) -> None:
        with self._lock:
            self._pending -= 1

    def _spin(self) -> None:
        try:
            while not self._stop.is_set() and self._helper.context.ok():
                self._executor.spin_once(timeout_sec=0.1)
        except (ExternalShutdownException, RCLError):  # the context shut down under us
            pass

    def destroy(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._executor.shutdown(timeout_sec=1)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._helper.destroy_node()


def _failure(resp: Any, message: str) -> Any:
    resp.success, resp.message = False, message
    return resp
