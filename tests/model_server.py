"""A small model server for the tests: OpenAI-, Ollama- and TGI-compatible routes on 127.0.0.1.

    python tests/model_server.py --port 8123 [--exit-early] [--crash-after N] [--delay S]
        [--daemonize exit|stay] [--clear-env] [--ignore-term] [--pid-file PATH]

It answers "You said: <the prompt>" (the last user message for chats), word by word when asked to
stream: Server-Sent Events for OpenAI (``stream`` or ``streaming`` true, ending with ``[DONE]``),
NDJSON for Ollama (streaming unless ``"stream": false``, as Ollama does). ``model: missing`` gets a 404.
``--daemonize`` makes it a daemon the classic way: it forks, the child calls ``setsid`` and forks
again, and the grandchild serves; the first process then exits (``exit``) or stays (``stay``).
``--clear-env`` has the grandchild re-execute itself with an empty environment, ``--ignore-term``
has the serving process ignore SIGTERM. ``--pid-file`` gets a line ``PID CREATE_TIME`` from every
process of that tree (the time as psutil gives it), so a test can check that each one is gone.
``GET /broken`` always answers 503 (a health check that never passes); ``POST /raw`` sends back
``{"content_type": ..., "chunks": [...]}`` exactly, chunk by chunk; ``POST /echo?...`` answers with
the JSON body, the query string and the headers it got.
Stdlib only, so the tests start it as a real process with no install.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = argparse.Namespace()


def reply_to(prompt: str) -> list:
    words = ["You", "said:"] + str(prompt).split()
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # the server's log is its stdout, read by the manager
        print(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}", flush=True)

    def do_GET(self):
        if self.path in ("/health", "/v1/models", "/api/tags"):
            self._json(200, {"status": "ok", "models": ["tiny"]})
        elif self.path == "/broken":
            self._json(503, {"error": "still loading, forever"})
        else:
            self._json(404, {"error": f"no route {self.path}"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path == "/raw":
            return self._raw(body["content_type"], body["chunks"])
        if self.path.startswith("/echo"):
            return self._json(200, {"body": body, "query": self.path.partition("?")[2],
                                    "headers": {k.lower(): v for k, v in self.headers.items()}})
        if body.get("model") == "missing":
            return self._json(404, {"error": "model 'missing' not found, try pulling it first"})
        if self.path == "/v1/chat/completions":
            words = reply_to(body["messages"][-1]["content"])
            if body.get("stream") or body.get("streaming"):
                return self._stream([{"choices": [{"index": 0, "delta": {"content": w}}]} for w in words] +
                                    [{"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}], sse=True)
            return self._json(200, {"choices": [{"index": 0, "message": {"role": "assistant",
                                                                          "content": "".join(words)}}]})
        if self.path == "/api/generate":
            words = reply_to(body["prompt"])
            if body.get("stream", True):
                return self._stream([{"response": w, "done": False} for w in words] + [{"response": "", "done": True}])
            return self._json(200, {"response": "".join(words), "done": True})
        if self.path == "/api/chat":
            words = reply_to(body["messages"][-1]["content"])
            if body.get("stream", True):
                return self._stream([{"message": {"role": "assistant", "content": w}, "done": False} for w in words]
                                    + [{"message": {"role": "assistant", "content": ""}, "done": True}])
            return self._json(200, {"message": {"role": "assistant", "content": "".join(words)}, "done": True})
        if self.path == "/generate":
            return self._json(200, {"generated_text": "".join(reply_to(body["inputs"]))})
        self._json(404, {"error": f"no route {self.path}"})

    def _json(self, status, data):
        raw = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _raw(self, content_type, chunks):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in chunks:
            data = chunk.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
            time.sleep(ARGS.delay)
        self.wfile.write(b"0\r\n\r\n")

    def _stream(self, events, sse=False):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream" if sse else "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        lines = [f"data: {json.dumps(e)}\n\n" if sse else json.dumps(e) + "\n" for e in events]
        if sse:
            lines.append("data: [DONE]\n\n")
        for i, line in enumerate(lines):
            if ARGS.crash_after is not None and i == ARGS.crash_after:
                print("crashing mid-stream on purpose", flush=True)
                os._exit(3)
            data = line.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
            time.sleep(ARGS.delay)
        self.wfile.write(b"0\r\n\r\n")


def record() -> None:
    """``PID CREATE_TIME`` of this process into the pid file, the time computed as psutil does."""
    if not ARGS.pid_file:
        return
    with open("/proc/self/stat") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/stat") as f:
        boot = next(float(line.split()[1]) for line in f if line.startswith("btime"))
    with open(ARGS.pid_file, "a") as f:
        f.write(f"{os.getpid()} {ticks / os.sysconf('SC_CLK_TCK') + boot}\n")


def daemonize() -> None:
    """Fork, setsid, fork: the grandchild returns (and serves); the others exit, or the first stays."""
    if os.fork() > 0:
        os.wait()
        if ARGS.daemonize == "stay":
            while True:
                time.sleep(60)
        sys.exit(0)
    os.setsid()
    record()
    if os.fork() > 0:
        os._exit(0)
    if ARGS.clear_env:   # the same server again, now neither daemonizing nor holding any environment
        argv = [a for a in sys.argv if a != "--clear-env" and not a.startswith("--daemonize=")]
        os.execve(sys.executable, [sys.executable, *argv], {})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--exit-early", action="store_true", help="print an error and exit before listening")
    parser.add_argument("--crash-after", type=int, default=None, help="exit after N chunks of a stream")
    parser.add_argument("--delay", type=float, default=0.01, help="seconds between streamed chunks")
    parser.add_argument("--start-after", type=float, default=0.0, help="seconds before listening")
    parser.add_argument("--daemonize", choices=["exit", "stay"], help="(as --daemonize=MODE) double-fork; the "
                                                                      "first process exits or stays")
    parser.add_argument("--clear-env", action="store_true", help="the daemon runs with an empty environment")
    parser.add_argument("--ignore-term", action="store_true", help="the serving process ignores SIGTERM")
    parser.add_argument("--pid-file", help="each process of the tree appends `PID CREATE_TIME` here")
    parser.parse_args(namespace=ARGS)
    record()
    if ARGS.daemonize:
        daemonize()
        record()
    if ARGS.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(f"model server starting on port {ARGS.port}", flush=True)
    if ARGS.exit_early:
        print("error: CUDA out of memory while loading the model (simulated)", flush=True)
        sys.exit(2)
    time.sleep(ARGS.start_after)
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
