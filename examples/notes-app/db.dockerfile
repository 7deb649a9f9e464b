# db.dockerfile: PostgreSQL 15 (Debian 12's), holding the notes' visits.
# Its data lives in a volume (-v notes-db:/var/lib/postgresql): a new volume
# is seeded with what the image has there, the cluster initdb made below.
#
#   ch06-bridge build -t notes-db -f examples/notes-app/db.dockerfile examples/notes-app
FROM debian:bookworm-slim

ARG DEBIAN_FRONTEND=noninteractive
# UTF-8 (glibc's built-in C.UTF-8): the cluster made at install is created
# with it, and psql in `exec db psql` speaks it.
ENV LANG=C.UTF-8
# The package makes the cluster 15/main (initdb) and would start it: the
# base image's /usr/sbin/policy-rc.d (exit 101) forbids that. /run/postgresql
# holds the server's Unix socket (systemd makes it on a real machine).
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o postgres -g postgres /run/postgresql

# Listen on the container's own interfaces (it is alone in its network
# namespace), and accept password logins from the other containers.
RUN echo "listen_addresses = '*'" >> /etc/postgresql/15/main/postgresql.conf \
 && echo "host all all 0.0.0.0/0 scram-sha-256" >> /etc/postgresql/15/main/pg_hba.conf

# The password of the user postgres: a fixed teaching value, the one the
# app's image passes to the app in its ENV (app.dockerfile). It is in this
# layer's history for anyone with the image to read: a real deployment sets
# it when the volume is first initialised, from a secret.
# The server is started for the ALTER USER only, on its Unix socket alone
# (listen_addresses=''): a build step shares the host's network, and must
# not open a port on it. This is done before VOLUME: what a step writes
# under a VOLUME path after the VOLUME line would be thrown away by docker.
RUN pg_ctlcluster 15 main start -- -o "-c listen_addresses=''" \
 && su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'notes-workshop'\"" \
 && pg_ctlcluster 15 main stop

VOLUME /var/lib/postgresql
USER postgres
# SIGINT: PostgreSQL's "fast" shutdown (roll back open transactions, write
# everything, exit); SIGTERM would be its "smart" one, which waits for every
# client to leave.
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["/usr/lib/postgresql/15/bin/postgres", "-D", "/var/lib/postgresql/15/main", "-c", "config_file=/etc/postgresql/15/main/postgresql.conf"]
