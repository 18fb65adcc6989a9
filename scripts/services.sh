#!/usr/bin/env bash
# Make sure the services the tests talk to are up: Redis and PostgreSQL on 127.0.0.1.
# They run already on developer and CI machines; this restarts one that stopped.
set -euo pipefail
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_up() {
  for _ in $(seq 1 60); do up "$1" && return 0; sleep 0.5; done
  echo "$2 did not come up on port $1" >&2; return 1
}
if ! up 6379; then
  echo "starting redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_up 6379 redis
fi
if ! up 5432; then
  echo "starting postgresql"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  wait_up 5432 postgresql
fi
