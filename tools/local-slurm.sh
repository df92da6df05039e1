#!/usr/bin/env bash
# tools/local-slurm.sh - a one-node SLURM cluster on localhost, in a folder of its own, for
# segpipe's cluster tests.
#
#   export $(tools/local-slurm.sh start [FOLDER])    # sets SLURM_CONF and SBATCH_PARTITION
#   sinfo; snakemake --workflow-profile profiles/slurm ...
#   tools/local-slurm.sh stop [FOLDER]
#
# FOLDER (default: .local-slurm/ in the repository, which git ignores; at most about 50
# characters, for the sockets inside it) holds the whole cluster:
#   etc/slurm.conf, etc/gres.conf   its configuration, found through SLURM_CONF
#   munge/                          its own munged: key, socket, pid file and log
#   state/, spool/                  slurmctld's state, slurmd's spool
#   log/                            slurmctld.log, slurmd.log, and what each daemon printed
#   run/                            slurmctld.pid, slurmd.pid
# Its cluster name, ports (the first free pair from 6917) and munged are its own. Apart
# from installing the packages where they are missing (apt-get), nothing is written under
# /etc, /var or /run: a SLURM or munge configured or running elsewhere on the machine
# neither disturbs it nor is disturbed by it.
#
# start prints what a caller needs on stdout, and nothing else there (progress goes to
# stderr):
#     SLURM_CONF=FOLDER/etc/slurm.conf
#     SBATCH_PARTITION=debug         (SEGPIPE_SLURM_PARTITION chooses another name)
# It is idempotent: a cluster of FOLDER already running with the same configuration is
# reused, otherwise restarted. On a failed start it prints the daemons' last log lines and
# stops what it started. stop cancels the cluster's jobs and stops the daemons whose pid
# files are in FOLDER, and nothing else.
#
# Debian's slurmctld, slurmd and munge (SLURM 22.05, which has no auth/slurm yet, hence
# munge), started directly (no systemd), as root. No accounting database: the SLURM profile
# polls with squeue. The node declares a counted GPU GRES without a device, so jobs that
# ask for --gpus=1 (the Mask R-CNN rule) are placed and run, on the CPU. Inside a job the
# Snakemake job step plugin calls srun without SLURM_CONF (it drops every SLURM_ variable
# but the job's identity), so slurmd runs in a mount namespace of its own in which FOLDER/etc
# is bind-mounted on /etc/slurm, where srun looks next, as on a real cluster's node; the
# machine's /etc/slurm is not touched.
#
# Exit status: 0 started (or already running), or stopped; 2 bad arguments or folder;
# 3 not root; 4 this machine cannot host the cluster (packages cannot be installed, no
# /etc/slurm to mount over, no mount namespaces); 5 a daemon did not come up (its log is
# printed).
set -euo pipefail

say() { echo "[local-slurm] $*" >&2; }
fail() { say "$2"; exit "$1"; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PARTITION=${SEGPIPE_SLURM_PARTITION:-debug}
MARK="# written by segpipe tools/local-slurm.sh"

action=${1:-start}
case $action in
  start | stop) ;;
  *) fail 2 "usage: $0 start|stop [FOLDER]" ;;
esac
[ $# -le 2 ] || fail 2 "usage: $0 start|stop [FOLDER]"
dir=${2:-$ROOT/.local-slurm}
case $dir in
  *[[:space:]]*)
    fail 2 "the cluster folder must not contain spaces (slurm.conf cannot quote them): '$dir'" ;;
esac
if [ "$action" = stop ] && [ ! -d "$dir" ]; then exit 0; fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd -P)
conf=$dir/etc/slurm.conf
export SLURM_CONF=$conf

pid_in() { [ -s "$1" ] && tr -dc '0-9' <"$1" || true; }
# ours PID NAME: PID is a live NAME started for this folder (its command line names it)
ours() {
  [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] || return 1
  [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] || return 1
  [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ] || return 1
  tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$dir/"
}
pidfile_of() {
  case $1 in
    munged) echo "$dir/munge/munged.pid" ;;
    *) echo "$dir/run/$1.pid" ;;
  esac
}
running() { ours "$(pid_in "$(pidfile_of "$1")")" "$1"; }

# Jobs first: their steps run under slurmd and would outlive it.
cancel_jobs() {
  running slurmctld || return 0
  local jobs
  jobs=$(timeout 10 squeue -h -o %A 2>/dev/null || true)
  [ -n "$jobs" ] || return 0
  say "cancelling jobs $(echo $jobs)"
  # shellcheck disable=SC2086  # one argument per job id
  timeout 10 scancel $jobs >&2 || true
  for _ in $(seq 60); do
    [ -z "$(timeout 10 squeue -h -t R,CG,S -o %A 2>/dev/null || true)" ] && break
    sleep 0.5
  done
}

stop_daemon() { # NAME
  local pidfile pid
  pidfile=$(pidfile_of "$1")
  pid=$(pid_in "$pidfile")
  if ours "$pid" "$1"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do ours "$pid" "$1" || break; sleep 0.2; done
    if ours "$pid" "$1"; then
      say "$1 ($pid) ignored SIGTERM for 30 s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 25); do ours "$pid" "$1" || break; sleep 0.2; done
    fi
    say "stopped $1 ($pid)"
  fi
  rm -f "$pidfile"
}

stop() {
  cancel_jobs
  for name in slurmd slurmctld munged; do stop_daemon "$name"; done
}

if [ "$action" = stop ]; then
  stop
  exit 0
fi

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
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' >$policy; chmod 755 $policy; own_policy=1; fi
  install=(apt-get -y -q -o DPkg::Lock::Timeout=300 install --no-install-recommends "${missing[@]}")
  export DEBIAN_FRONTEND=noninteractive
  ok=1
  "${install[@]}" >&2 || { apt-get -q -o DPkg::Lock::Timeout=300 update >&2 && "${install[@]}" >&2; } || ok=0
  [ $own_policy = 1 ] && rm -f $policy
  [ $ok = 1 ] || fail 4 "apt-get could not install ${missing[*]}"
fi
[ -d /etc/slurm ] \
  || fail 4 "no /etc/slurm to mount the cluster's configuration on in its node (the SLURM packages create it)"
unshare --mount --propagation private true 2>/dev/null \
  || fail 4 "no mount namespaces here (unshare --mount failed): the jobs' srun could not find the cluster"

host=$(hostname -s)
# A unix socket path holds at most 107 bytes; the longest here is slurmd's for a job's
# batch step, spool/<node>_<job id>.<step id>, with ids up to 10 digits.
longest="$dir/spool/${host}_1234567890.4294967291"
[ ${#longest} -le 107 ] \
  || fail 2 "the cluster folder's path is too long for SLURM's sockets (${#longest} > 107 bytes: $longest); pass a shorter folder"
cpus=$(nproc)
memory=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)

conf_text() { # SLURMCTLD_PORT SLURMD_PORT
  cat <<EOF
$MARK (rewritten on each start)
ClusterName=segpipe-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$1
SlurmdPort=$2
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
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
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}
# A stand-in GPU: slurmd counts a gres/gpu only with a device file, and /dev/null is one;
# with task/none nothing is bound. Enough for the scheduler to place --gpus=1.
gres_text="$MARK
NodeName=$host Name=gpu File=/dev/null"

report() {
  echo "SLURM_CONF=$conf"
  echo "SBATCH_PARTITION=$PARTITION"
}

old_ports=()
if [ -f "$conf" ]; then
  read -r -a old_ports <<<"$(sed -n 's/^SlurmctldPort=//p; s/^SlurmdPort=//p' "$conf" | tr '\n' ' ')"
fi
if running munged && running slurmctld && running slurmd && [ ${#old_ports[@]} = 2 ] \
  && [ "$(cat "$conf")" = "$(conf_text "${old_ports[@]}")" ]; then
  say "the cluster of $dir runs already"
  report
  exit 0
fi
stop

port_free() { # PORT: nothing listens on it
  if command -v ss >/dev/null; then
    [ -z "$(ss -Hltn "( sport = :$1 )")" ]
  else
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}
ports=()
# The last start's ports when free, so that slurm.conf stays the same.
if [ ${#old_ports[@]} = 2 ] && port_free "${old_ports[0]}" && port_free "${old_ports[1]}"; then
  ports=("${old_ports[@]}")
else
  for p in $(seq 6917 2 7115); do
    if port_free "$p" && port_free $((p + 1)); then ports=("$p" $((p + 1))); break; fi
  done
fi
[ ${#ports[@]} = 2 ] || fail 5 "no two free ports between 6917 and 7116"

install -d -m 0755 "$dir/etc" "$dir/munge" "$dir/state" "$dir/spool" "$dir/log" "$dir/run"
conf_text "${ports[@]}" >"$conf"
printf '%s\n' "$gres_text" >"$dir/etc/gres.conf"
if [ ! -s "$dir/munge/munge.key" ]; then
  mungekey --create --keyfile="$dir/munge/munge.key"
  chmod 0600 "$dir/munge/munge.key"
fi

logs=("$dir/log/slurmctld.log" "$dir/log/slurmd.log" "$dir/munge/munged.log"
      "$dir/log/munged.out" "$dir/log/slurmctld.out" "$dir/log/slurmd.out")
# A failed start shows why (the cause is in the daemons' logs) and leaves nothing running.
give_up() {
  say "$1"
  for f in "${logs[@]}"; do
    [ -s "$f" ] || continue
    echo "---- last lines of $f" >&2
    tail -n 15 "$f" >&2
  done
  stop
  exit 5
}

# launch NAME COMMAND...: the daemons fork themselves; they get no stdout of ours (a caller
# reading it through $(...) would wait for them forever).
launch() {
  local name=$1; shift
  "$@" </dev/null >"$dir/log/$name.out" 2>&1 || give_up "$name did not start"
}
# wait_up NAME SECONDS COMMAND...: until COMMAND succeeds; fails at once when NAME died
# (its pid file names a dead process) or logged a fatal error.
wait_up() {
  local name=$1 end=$((SECONDS + $2)) log pid
  shift 2
  log=$dir/log/$name.log
  until "$@" >/dev/null 2>&1; do
    pid=$(pid_in "$(pidfile_of "$name")")
    if [ -n "$pid" ] && ! ours "$pid" "$name"; then return 1; fi
    if [ -f "$log" ] && tail -n +"$((${log_start[$name]:-0} + 1))" "$log" | grep -q "fatal:"; then
      return 1
    fi
    [ $SECONDS -lt $end ] || return 1
    sleep 0.3
  done
}
declare -A log_start
for name in slurmctld slurmd; do
  log_start[$name]=$( [ -f "$dir/log/$name.log" ] && wc -l <"$dir/log/$name.log" || echo 0)
done

munge_socket=$dir/munge/munge.socket
# --force: munged wants every folder above its socket open to all users, and FOLDER may
# sit in a private home; only root's SLURM daemons and commands use this munged.
launch munged /usr/sbin/munged --force --socket="$munge_socket" \
  --key-file="$dir/munge/munge.key" --pid-file="$dir/munge/munged.pid" \
  --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed"
wait_up munged 20 sh -c "munge -n -S '$munge_socket' | unmunge -S '$munge_socket'" \
  || give_up "munged does not answer on $munge_socket"
say "started munged ($(pid_in "$dir/munge/munged.pid"))"

launch slurmctld /usr/sbin/slurmctld -f "$conf"
wait_up slurmctld 60 sh -c 'scontrol ping | grep -q UP' || give_up "slurmctld did not start"
say "started slurmctld ($(pid_in "$dir/run/slurmctld.pid")) on port ${ports[0]}"

# shellcheck disable=SC2016  # expanded by the inner shell
launch slurmd unshare --mount --propagation private \
  sh -c 'mount --bind "$1" /etc/slurm && shift && exec "$@"' sh "$dir/etc" \
  /usr/sbin/slurmd -f "$conf"
node_up() {
  state=$(sinfo -h -n "$host" -o %T 2>/dev/null | head -1 | tr -d '*~#!%$@^-' || true)
  case $state in
    idle | mixed | allocated | completing) return 0 ;;
    down | drained | draining | fail*)
      [ $resumed = 0 ] && { scontrol update nodename="$host" state=resume >&2 || true; resumed=1; } ;;
  esac
  return 1
}
resumed=0
state=
wait_up slurmd 120 node_up || give_up "node $host is '$state', not idle"
say "started slurmd ($(pid_in "$dir/run/slurmd.pid")) on port ${ports[1]}"
say "partition $PARTITION ready: $cpus CPUs, $memory MB, 1 counted GPU; cluster folder $dir"
report
