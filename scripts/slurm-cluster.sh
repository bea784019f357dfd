#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the SLURM executor's tests and for trying
# `--executor slurm` without a cluster: Debian's munge, slurmctld and slurmd, one node with this
# machine's CPUs, one partition. Needs root (it writes /etc/slurm/slurm.conf and starts daemons).
#
#   scripts/slurm-cluster.sh start    install what is missing, configure, start, wait until the node is idle
#   scripts/slurm-cluster.sh stop     cancel every job, stop the daemons; nothing is left running
#   scripts/slurm-cluster.sh status   print the daemons' pids and sinfo
#
# Its state (spool, logs, pids) lives in $AUTORESEARCH_SLURM_DIR (/tmp/autoresearch-slurm).
# Completed jobs stay visible to squeue/scontrol for an hour (MinJobAge): a test can read the
# state and reason SLURM gave a job after it ended, without an accounting database.
set -euo pipefail

state=${AUTORESEARCH_SLURM_DIR:-/tmp/autoresearch-slurm}
conf=/etc/slurm/slurm.conf
marker="# written by autoresearch scripts/slurm-cluster.sh"

die() { echo "slurm-cluster: $*" >&2; exit 1; }

install_missing() {
  local missing=()
  command -v munged >/dev/null 2>&1 || missing+=(munge)
  command -v slurmctld >/dev/null 2>&1 || missing+=(slurmctld)
  command -v slurmd >/dev/null 2>&1 || missing+=(slurmd)
  command -v sbatch >/dev/null 2>&1 || missing+=(slurm-client)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

configure() {
  if [ -f "$conf" ] && ! grep -qF "$marker" "$conf"; then
    die "$conf exists and is not ours: this script configures a test cluster and will not replace a real one"
  fi
  local host cpus
  host=$(hostname -s)
  cpus=$(nproc)
  mkdir -p "$state/ctld" "$state/d" /etc/slurm
  cat >"$conf" <<EOF
$marker
ClusterName=autoresearch
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
AuthType=auth/munge
# No cgroups: the tests run in containers and VMs where they may be missing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# CPUs are the consumable: a 2-CPU node runs two 1-CPU jobs at once.
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
# Finished jobs stay in squeue --states=all for an hour; the time limit is enforced every 30 s.
MinJobAge=3600
KillWait=5
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if pgrep -x munged >/dev/null; then return; fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 600 /etc/munge/munge.key
  fi
  runuser -u munge -- /usr/sbin/munged
}

start() {
  [ "$(id -u)" -eq 0 ] || die "needs root: it writes $conf and starts SLURM's daemons"
  install_missing
  configure
  start_munge
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd
  local host
  host=$(hostname -s)
  for _ in $(seq 1 60); do
    if sinfo -h -n "$host" -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
      echo "slurm-cluster: node $host up ($(nproc) CPUs), partition debug"
      return
    fi
    # A node left down by an earlier run is returned to service.
    scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
    sleep 1
  done
  tail -n 20 "$state/slurmctld.log" "$state/slurmd.log" >&2 || true
  die "the node did not come up within 60 s (logs above)"
}

stop() {
  if pgrep -x slurmctld >/dev/null; then
    scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    # Every job gone before the daemons go, so that no training program outlives them.
    for _ in $(seq 1 20); do
      [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.5
    done
  fi
  for daemon in slurmd slurmctld munged; do
    pkill -x "$daemon" 2>/dev/null || true
  done
  # pgrep takes process names of at most 15 characters: one name at a time.
  local daemons=(slurmd slurmctld munged slurmstepd)
  for _ in $(seq 1 20); do
    local left=0
    for daemon in "${daemons[@]}"; do
      pgrep -x "$daemon" >/dev/null && left=1
    done
    [ "$left" -eq 0 ] && break
    sleep 0.5
  done
  for daemon in "${daemons[@]}"; do
    pkill -9 -x "$daemon" 2>/dev/null || true
  done
  echo "slurm-cluster: stopped"
}

status() {
  for daemon in munged slurmctld slurmd; do
    echo "$daemon: $(pgrep -x "$daemon" | tr '\n' ' ')"
  done
  sinfo 2>&1 || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
