# web.dockerfile: nginx in front of the app, the only container whose port
# is published (-p 8080:80). It forwards every request to http://app:8000
# (notes.conf).
#
#   ch06-bridge build -t notes-web -f examples/notes-app/web.dockerfile examples/notes-app
FROM debian:bookworm-slim

ARG DEBIAN_FRONTEND=noninteractive
# nginx-light: the small build of nginx (no extra modules). Its install
# would start nginx, on port 80 of the build's network (the host's): the
# base image's /usr/sbin/policy-rc.d (exit 101) forbids it. The logs go to
# the container's stdout and stderr (`logs web`), as docker's nginx image does.
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx-light \
 && rm -rf /var/lib/apt/lists/* \
 && rm /etc/nginx/sites-enabled/default \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log

COPY notes.conf /etc/nginx/conf.d/
EXPOSE 80
# SIGQUIT: nginx's graceful shutdown (SIGTERM would be its fast one).
STOPSIGNAL SIGQUIT
# In the foreground: the container lives as long as its PID 1.
CMD ["nginx", "-g", "daemon off;"]
