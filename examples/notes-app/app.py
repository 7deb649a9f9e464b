"""The notes' app: counts its visits in PostgreSQL.

    GET /         records a visit and answers `visits: N` (N visits so far)
    GET /healthz  answers `ok` (the app runs; the database is not asked)

Python's standard library only, and psycopg2 (Debian's python3-psycopg2).
Where the database is comes from the environment (the image's ENV):
DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD.

Each request opens a connection of its own and closes it: the simplest
thing that survives a database restart (a kept connection would be dead
after it). When the database cannot be reached, or fails, the answer is
503 `database unavailable` at once (after at most DB_CONNECT_TIMEOUT
seconds), never a hang and never a crash: the app keeps running and
answers again as soon as the database is back.

SIGTERM (what `stop` sends) shuts the server down cleanly: as PID 1 of
its container, the app gets no default handler from the kernel, so
without this one `stop` would wait its grace period and SIGKILL it.
"""

import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2

PORT = int(os.environ.get("PORT", "8000"))
DB = {
    "host": os.environ.get("DB_HOST", "db"),
    "port": int(os.environ.get("DB_PORT", "5432")),
    "dbname": os.environ.get("DB_NAME", "postgres"),
    "user": os.environ.get("DB_USER", "postgres"),
    "password": os.environ.get("DB_PASSWORD", ""),
    # libpq's own limit on connecting (2 s is its minimum).
    "connect_timeout": int(os.environ.get("DB_CONNECT_TIMEOUT", "2")),
}

SCHEMA = "CREATE TABLE IF NOT EXISTS visits (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"


def count_a_visit():
    """Records one visit; returns how many there have been."""
    connection = psycopg2.connect(**DB)
    try:
        # One transaction: the table (the first time), the visit, the count.
        with connection, connection.cursor() as cursor:
            # Two first requests at once would race to create the table:
            # a transaction-scoped lock makes the second wait for the first.
            cursor.execute("SELECT pg_advisory_xact_lock(8000)")
            cursor.execute(SCHEMA)
            cursor.execute("INSERT INTO visits DEFAULT VALUES")
            cursor.execute("SELECT count(*) FROM visits")
            return cursor.fetchone()[0]
    finally:
        connection.close()


class Handler(BaseHTTPRequestHandler):
    server_version = "notes-app/1"

    def do_GET(self):
        if self.path == "/healthz":
            self.answer(200, "ok")
        elif self.path == "/":
            try:
                visits = count_a_visit()
            except psycopg2.Error as error:
                # Refused, timed out, a name that does not resolve, a wrong
                # password, a failed query: the visitor gets 503, the log
                # gets the reason.
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                self.log_message("database unavailable: %s", first_line)
                self.answer(503, "database unavailable")
            else:
                self.answer(200, f"visits: {visits}")
        else:
            self.answer(404, "not found")

    def answer(self, status, text):
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        # On stdout, one line each, flushed: `logs app` shows them at once.
        print(f"{self.address_string()} {format % args}", flush=True)


def main():
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = True

    def on_sigterm(signum, frame):
        print("SIGTERM: shutting down", flush=True)
        # shutdown() waits for serve_forever() to return, which runs in this
        # very thread: ask from another one.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
    print(f"notes app on port {PORT}, database {DB['host']}:{DB['port']}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
