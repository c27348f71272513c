#!/usr/bin/env bash
# Builds the local SSH server image that stands in for a deploy target reached as
# `ssh://deploy@host`: Debian's `openssh-server` and the `docker` CLI on the local Python base. The
# Docker provider and CLI run `ssh deploy@host docker system dial-stdio` there, so the server needs
# the CLI only; the engine is the one whose socket is mounted at /var/run/docker.sock. At container
# start it makes its own host key (none is baked into the image), puts `deploy` in the group that owns
# the mounted socket, and authorizes the public key in AUTHORIZED_KEY; logins are `deploy` with
# that key only (support/sshd.ts starts it). Skipped when the image exists.
set -euo pipefail
cd "$(dirname "$0")/.."
image="${SSHD_IMAGE:-local/sshd:bookworm}"
base="${BASE_IMAGE:-local/python-base:3.11-bookworm}"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "sshd image $image present"
  exit 0
fi
bash scripts/build-base-image.sh >/dev/null
echo "building $image from Debian's openssh-server and docker.io packages"
context="$(mktemp -d /tmp/sshd-image.XXXXXX)"
trap 'rm -rf "$context"' EXIT

# Settings in sshd_config.d win over the main file (sshd keeps the first value it reads, and
# Debian's sshd_config includes this directory first). No PAM: nothing is asked of the user, and
# PAM's session modules fail in a container without an audit login uid.
cat >"$context/deploy.conf" <<'CONF'
HostKey /etc/ssh/ssh_host_ed25519_key
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
PermitRootLogin no
AllowUsers deploy
UsePAM no
X11Forwarding no
AllowAgentForwarding no
PrintMotd no
CONF

cat >"$context/entrypoint.sh" <<'SH'
#!/bin/sh
# A host key of this container's own, made now: one baked into the image would be shared by every
# container started from it, and a pinned known_hosts line would prove nothing.
set -eu
key=/etc/ssh/ssh_host_ed25519_key
[ -f "$key" ] || ssh-keygen -q -t ed25519 -N '' -C '' -f "$key"
# The deploy user reaches the engine through the mounted socket: it joins the group that owns the
# socket on this host, whatever its id (the host's `docker` group id differs between machines).
if [ -S /var/run/docker.sock ]; then
  gid="$(stat -c %g /var/run/docker.sock)"
  group="$(getent group "$gid" | cut -d: -f1)"
  if [ -z "$group" ]; then
    groupadd --gid "$gid" docker-host
    group=docker-host
  fi
  usermod --append --groups "$group" deploy
fi
if [ -n "${AUTHORIZED_KEY:-}" ]; then
  printf '%s\n' "$AUTHORIZED_KEY" >/home/deploy/.ssh/authorized_keys
  chown deploy:deploy /home/deploy/.ssh/authorized_keys
  chmod 600 /home/deploy/.ssh/authorized_keys
fi
install -d -m 755 /run/sshd
exec /usr/sbin/sshd -D -e "$@"
SH

chmod 755 "$context/entrypoint.sh"

# The docker CLI is taken from Debian's docker.io package alone (it needs only libc): installing the
# whole package would add the engine, containerd, runc and iptables, which the server never runs.
# `usermod --password '*'`: an account whose password is `!` counts as locked, and sshd without PAM
# refuses a locked account even for a public-key login; `*` matches no password.
cat >"$context/Dockerfile" <<'DOCKERFILE'
ARG BASE
FROM ${BASE}
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server >/dev/null \
 && cd /tmp && apt-get download -qq docker.io \
 && dpkg-deb --fsys-tarfile docker.io_*.deb | tar -x -C / ./usr/bin/docker \
 && rm -f /tmp/docker.io_*.deb /usr/sbin/policy-rc.d /etc/ssh/ssh_host_* \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/* \
 && useradd --create-home --shell /bin/bash deploy \
 && usermod --password '*' deploy \
 && install -d -o deploy -g deploy -m 700 /home/deploy/.ssh \
 && docker --version && ssh -V
COPY deploy.conf /etc/ssh/sshd_config.d/10-deploy.conf
COPY entrypoint.sh /usr/local/sbin/sshd-entrypoint
EXPOSE 22
ENTRYPOINT ["/usr/local/sbin/sshd-entrypoint"]
DOCKERFILE

docker build --quiet --tag "$image" --build-arg BASE="$base" "$context" >/dev/null
echo "built $image ($(docker run --rm --entrypoint docker "$image" --version))"
