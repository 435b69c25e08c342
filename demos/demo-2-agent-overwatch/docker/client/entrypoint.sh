#!/bin/sh
# The client's PID 1: sshd in the foreground, logging to `docker logs client`.
set -eu
echo 'root:demo' | chpasswd
# The base image has host keys; this only makes those that are missing.
ssh-keygen -A
mkdir -p /run/sshd
exec /usr/sbin/sshd -D -e
