"""An OpenAI-compatible upstream that answers every POST with one canned chat completion (with a
`usage` block), at once or after a fixed latency (`InstantUpstream(latency_s=1.0)`: a model's time per
request). Run in its own process (`python -m bench.instant_upstream [port] [latency_s]`) so its CPU time
and GIL are not the benchmarked client's. HTTP/1.1 keep-alive on raw asyncio: as little server cost
as Python allows, so the client side is what is measured."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import orjson

_BODY = orjson.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1760000000, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok " * 40, "refusal": None},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1000, "completion_tokens": 40, "total_tokens": 1040,
              "prompt_tokens_details": {"cached_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0}}})
_RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: req_bench\r\n"
             b"content-length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY)


class _Protocol(asyncio.Protocol):
    latency_s = 0.0

    def connection_made(self, transport):
        self.transport, self.buf = transport, bytearray()
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            length = 0
            for line in bytes(self.buf[:head_end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            end = head_end + 4 + length
            if len(self.buf) < end:
                return
            del self.buf[:end]
            if self.latency_s:
                self.loop.call_later(self.latency_s, self._answer)
            else:
                self.transport.write(_RESPONSE)

    def _answer(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(_RESPONSE)


async def _serve(port: int, latency_s: float) -> None:
    _Protocol.latency_s = latency_s
    server = await asyncio.get_running_loop().create_server(_Protocol, "127.0.0.1", port, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


class InstantUpstream:
    """Context manager: the server process; `base_url` ends in /v1."""

    def __init__(self, latency_s: float = 0.0):
        self.latency_s = latency_s

    def __enter__(self) -> InstantUpstream:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.instant_upstream", "0", str(self.latency_s)],
                                     stdout=subprocess.PIPE,
                                     text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        port = self.proc.stdout.readline().strip()
        if not port:
            self.proc.kill()
            raise RuntimeError("instant upstream did not start")
        self.base_url = f"http://127.0.0.1:{port}/v1"
        time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


if __name__ == "__main__":
    try:
        asyncio.run(_serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0,
                           float(sys.argv[2]) if len(sys.argv) > 2 else 0.0))
    except KeyboardInterrupt:
        pass
