# app.dockerfile: the notes' Python app (app.py), served on port 8000,
# its visits kept in PostgreSQL (the `db` container, db.dockerfile).
#
#   ch06-bridge build -t notes-app -f examples/notes-app/app.dockerfile examples/notes-app
FROM debian:bookworm-slim

# Only for the build (an ARG does not stay in the image): apt asks nothing.
ARG DEBIAN_FRONTEND=noninteractive
# One RUN, one layer: install, and delete apt's package lists in the same
# step (deleted in a later step, they would stay in this layer anyway).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-psycopg2 \
 && rm -rf /var/lib/apt/lists/*

COPY app.py /app/
# No need for root to answer HTTP on a port above 1024.
USER nobody
EXPOSE 8000
# Where the database is: `db` is the database container's name on the
# network `notes` (the engine writes it into /etc/hosts).
# DB_PASSWORD is a fixed teaching value, the one db.dockerfile sets. An
# image's ENV is readable by anyone who has the image (inspect, history):
# a real deployment passes it when the container starts (-e DB_PASSWORD=…,
# or a file mounted from a secret store), never in a Dockerfile.
ENV DB_HOST=db DB_NAME=postgres DB_USER=postgres DB_PASSWORD=notes-workshop
CMD ["python3", "/app/app.py"]
