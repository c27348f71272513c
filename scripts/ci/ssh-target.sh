#!/usr/bin/env bash
# For the GitHub workflows, after a job has written its environment's SSH_PRIVATE_KEY and
# SSH_KNOWN_HOSTS to ~/.ssh/id_ed25519 and ~/.ssh/known_hosts: pins every OpenSSH client of the job
# to exactly those, and checks before any `pulumi` update or preview that each stack named deploys
# over SSH to a host whose key is pinned, through a registry. Each refusal says what to set where.
# It prints no secret: only the public host key fingerprints it pins.
#
#   bash scripts/ci/ssh-target.sh STACK...
set -euo pipefail
cd "$(dirname "$0")/../.."
(($# > 0)) || { echo "usage: bash scripts/ci/ssh-target.sh STACK..." >&2; exit 2; }
key="$HOME/.ssh/id_ed25519"
known_hosts="$HOME/.ssh/known_hosts"
setup='README "Pull requests and deployment"'
fail() { echo "error: $*" >&2; exit 1; }

# The Docker provider's ssh:// connection runs the system's OpenSSH client, which reads this file:
# this key only, only the pinned host keys (not the runner's global list), never a prompt, and never a
# host key added or updated on the way. An unknown or changed host key ends the connection.
# One shared connection per server for the job (ControlMaster): without it every Docker API call of
# the provider and of the program is a new SSH handshake (bench-results/remote.json: a staging
# update over ssh:// 22 s without, 15.5 s with). The job's last step closes it with the key.
umask 077
cat > "$HOME/.ssh/config" <<'EOF'
Host *
  IdentityFile ~/.ssh/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile ~/.ssh/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  UpdateHostKeys no
  BatchMode yes
  ControlMaster auto
  ControlPath ~/.ssh/cm-%C
  ControlPersist 60
EOF

for file in "$key" "$known_hosts"; do
  [[ ! -e "$file" || "$(stat -c %a "$file")" == 600 ]] || fail "$file has mode $(stat -c %a "$file"), not 600"
done
grep -q . "$key" 2>/dev/null || fail "SSH_PRIVATE_KEY is empty or unset in this job's GitHub environment; see $setup"
# -P '': a key with a passphrase cannot be used unattended, so it is refused here rather than by ssh.
ssh-keygen -y -P '' -f "$key" >/dev/null 2>&1 \
  || fail "SSH_PRIVATE_KEY is not an OpenSSH private key without a passphrase (the whole file, BEGIN and END lines included)"
grep -q . "$known_hosts" 2>/dev/null || fail "SSH_KNOWN_HOSTS is empty or unset in this job's GitHub environment; see $setup"
echo "pinned host keys:"
ssh-keygen -l -f "$known_hosts" || fail "SSH_KNOWN_HOSTS holds no known_hosts line (host, key type, key); see $setup"

# ssh://[user@]host[:port], the host also as [IPv6].
ssh_url='^ssh://([^@/]+@)?(\[[0-9A-Fa-f:.]+\]|[^]:/@[]+)(:([0-9]+))?/?$'
for stack in "$@"; do
  host="$(pulumi config get --stack "$stack" docker:host 2>/dev/null || true)"
  if [[ ! "$host" =~ $ssh_url ]]; then
    fail "stack $stack: docker:host is '${host:-unset}', not ssh://USER@HOST; CI deploys to your server, never to the runner's own engine, which goes away with the runner: pulumi config set --stack $stack docker:host ssh://deploy@<server>"
  fi
  name="${BASH_REMATCH[2]#[}" name="${name%]}" port="${BASH_REMATCH[4]:-22}"
  entry="$name"
  [[ "$port" == 22 ]] || entry="[$name]:$port"
  ssh-keygen -F "$entry" -f "$known_hosts" >/dev/null \
    || fail "stack $stack: SSH_KNOWN_HOSTS pins no host key for $entry (docker:host $host); add the line of \`ssh-keyscan -t ed25519 -p $port $name\`, checked against the server's own fingerprint (ssh-keygen -l -f /etc/ssh/ssh_host_ed25519_key.pub on the server)"
  pulumi config get --stack "$stack" --path image.registry.server >/dev/null 2>&1 \
    || fail "stack $stack: image.registry is unset, so the image would stay on one server; pulumi config set --stack $stack --path image.registry.server ghcr.io and pulumi config set --stack $stack --path image.registry.username <owner>"
  echo "stack $stack: Docker host $host (host key pinned), registry $(pulumi config get --stack "$stack" --path image.registry.server)"
done
