#!/usr/bin/env bash
# tools/local-slurm.sh - a one-node SLURM cluster on localhost, for segpipe's cluster tests.
#
#   PARTITION=$(tools/local-slurm.sh start)    # prints the partition name, nothing else
#   tools/local-slurm.sh stop                  # stops the daemons this script started
#
# Debian's slurmctld, slurmd and munge, started directly (no systemd), as root. No
# accounting database: the SLURM profile polls with squeue, which works with and without
# one. The node declares a counted GPU GRES without a device file, so jobs that ask for
# --gpus=1 (the Mask R-CNN rule) are accepted and run, on the CPU.
#
# Exit status: 0 started (or already running); 3 not root; 4 the packages cannot be
# installed; 5 a daemon did not come up (its log is printed). Progress goes to stderr.
set -euo pipefail

say() { echo "[local-slurm] $*" >&2; }
fail() { say "$2"; exit "$1"; }

PARTITION=${SEGPIPE_SLURM_PARTITION:-debug}
RUN=/run/segpipe-slurm            # pid files of the daemons started here
MARK="# written by segpipe tools/local-slurm.sh"

stop() {
  for name in slurmd slurmctld munged; do
    pidfile=$RUN/$name.pid
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      say "stopped $name ($pid)"
    fi
    rm -f "$pidfile"
  done
}

case ${1:-start} in
  stop) stop; exit 0 ;;
  start) ;;
  *) fail 2 "usage: $0 start|stop" ;;
esac

[ "$(id -u)" = 0 ] || fail 3 "must run as root (it installs packages and starts daemons)"

packages=(munge slurm-client slurmctld slurmd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || fail 4 "no apt-get to install ${missing[*]}"
  say "installing ${missing[*]}"
  # Keep the packages' install scripts from starting services of their own.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' > $policy; chmod 755 $policy; own_policy=1; fi
  install=(apt-get -y -q -o DPkg::Lock::Timeout=300 install --no-install-recommends "${missing[@]}")
  export DEBIAN_FRONTEND=noninteractive
  ok=1
  "${install[@]}" >&2 || { apt-get -q -o DPkg::Lock::Timeout=300 update >&2 && "${install[@]}" >&2; } || ok=0
  [ $own_policy = 1 ] && rm -f $policy
  [ $ok = 1 ] || fail 4 "apt-get could not install ${missing[*]}"
fi

host=$(hostname -s)
cpus=$(nproc)
memory=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
install -d -m 0755 /etc/slurm "$RUN"
install -d -o munge -g munge -m 0755 /run/munge
install -d -o slurm -g slurm -m 0755 /run/slurm /var/lib/slurm /var/lib/slurm/slurmctld /var/log/slurm
install -d -m 0755 /var/lib/slurm/slurmd

conf="$MARK
ClusterName=segpipe-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# No cgroups and no systemd here.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default a job without --mem takes the whole node's memory.
DefMemPerCPU=$((memory / cpus))
ReturnToService=2
# squeue must still see finished jobs when the executor polls (>= 3x its poll interval).
MinJobAge=300
KillWait=5
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP"
# A stand-in GPU: slurmd counts a gres/gpu only with a device file, and /dev/null is one;
# with task/none nothing is bound. Enough for the scheduler to place --gpus=1.
gres="$MARK
NodeName=$host Name=gpu File=/dev/null"

changed=0
write() { # FILE TEXT: rewrite when different; keep a copy of a file this script did not write
  if [ ! -f "$1" ] || [ "$(cat "$1")" != "$2" ]; then
    if [ -f "$1" ] && ! grep -qF "$MARK" "$1"; then cp -p "$1" "$1.before-segpipe"; fi
    printf '%s\n' "$2" > "$1"
    changed=1
  fi
}
write /etc/slurm/slurm.conf "$conf"
write /etc/slurm/gres.conf "$gres"
[ $changed = 1 ] && { say "configuration written"; stop; }

if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key
  chmod 0600 /etc/munge/munge.key
fi

wait_until() { # SECONDS COMMAND...
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ $SECONDS -lt "$end" ] || return 1; sleep 0.3; done
}
running() { [ -s "$RUN/$1.pid" ] && [ "$(cat "/proc/$(cat "$RUN/$1.pid")/comm" 2>/dev/null)" = "$1" ]; }
# start NAME PIDFILE LOG COMMAND... : daemons get no stdout of ours (a caller reading it
# through $(...) would wait for them forever).
start() {
  local name=$1 pidfile=$2 logfile=$3; shift 3
  if running "$name"; then return 0; fi
  if pgrep -x "$name" >/dev/null; then say "$name runs already (not started here): using it"; return 0; fi
  rm -f "$pidfile"
  "$@" </dev/null >>"$RUN/$name.out" 2>&1 || { cat "$RUN/$name.out" >&2; fail 5 "$name did not start"; }
  wait_until 30 test -s "$pidfile" || { tail -20 "$logfile" >&2; fail 5 "$name wrote no pid file"; }
  cp "$pidfile" "$RUN/$name.pid"
  say "started $name ($(cat "$pidfile"))"
}

start munged /run/munge/munged.pid /var/log/munge/munged.log \
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
wait_until 20 sh -c 'munge -n | unmunge' || fail 5 "munge does not answer"
start slurmctld /run/slurm/slurmctld.pid /var/log/slurm/slurmctld.log /usr/sbin/slurmctld
wait_until 60 sh -c 'scontrol ping | grep -q UP' || { tail -20 /var/log/slurm/slurmctld.log >&2; fail 5 "slurmctld does not answer"; }
start slurmd /run/slurm/slurmd.pid /var/log/slurm/slurmd.log /usr/sbin/slurmd

end=$((SECONDS + 120))
resumed=0
while :; do
  state=$(sinfo -h -n "$host" -o %T 2>/dev/null | head -1 | tr -d '*~#!%$@^-' || true)
  case $state in
    idle | mixed | allocated | completing) break ;;
    down | drained | draining | fail*)
      [ $resumed = 0 ] && { scontrol update nodename="$host" state=resume >&2 || true; resumed=1; } ;;
  esac
  [ $SECONDS -lt $end ] || { tail -20 /var/log/slurm/slurmd.log >&2; fail 5 "node $host is '$state', not idle"; }
  sleep 0.5
done
say "partition $PARTITION ready: $cpus CPUs, $memory MB, 1 counted GPU"
echo "$PARTITION"
