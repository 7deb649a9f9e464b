# base.dockerfile: the notes' app's base image, debian:bookworm-slim, made
# the way Debian's official image is: a root filesystem written by a
# bootstrapping tool (here scripts/debian-base, with mmdebstrap, from
# Debian's archive), added to an empty image.
#
#   scripts/debian-base                      # writes target/notes-app/debian-bookworm-slim.tar
#   ch06-bridge build -t debian:bookworm-slim -f examples/notes-app/base.dockerfile target/notes-app
#
# The context is the directory that holds the tar (it is not copied here).
# Named debian:bookworm-slim, the image is docker.io/library/debian:bookworm-slim
# in the store: the other three Dockerfiles' `FROM debian:bookworm-slim`
# find it there and never ask a registry.
FROM scratch
# A local tar archive is unpacked by ADD: one layer, the whole system.
ADD debian-bookworm-slim.tar /
CMD ["bash"]
