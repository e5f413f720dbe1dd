#!/usr/bin/env bash
# A one-node Slurm cluster on this machine (munge, slurmctld, slurmd with this machine's CPUs
# and memory), for trying deploy/slurm/hpo-worker.sbatch and for .ci/run's Slurm test.
# Idempotent: on a fresh Debian machine it installs slurm-wlm and munge and starts the
# daemons; when the cluster is already up it only checks that the node takes jobs.
# Needs root (or sudo) and no systemd: the daemons are started directly. No cgroups, so it
# also runs in a container (proctrack/linuxproc, task/none).
set -euo pipefail

sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
conf=/etc/slurm/slurm.conf
marker="# written by reluprime-hpo deploy/slurm/local-cluster.sh"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge
fi

# munge: the key comes with Debian's package; create one if it does not.
if [ ! -s /etc/munge/munge.key ]; then
  $sudo mungekey --create --force 2>/dev/null \
    || $sudo dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  $sudo chown munge:munge /etc/munge/munge.key
  $sudo chmod 400 /etc/munge/munge.key
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  $sudo mkdir -p /run/munge /var/log/munge /var/lib/munge
  $sudo chown munge:munge /run/munge /var/log/munge /var/lib/munge
  $sudo runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 1 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
  munge -n | unmunge >/dev/null
fi

# slurm.conf for this host. A slurm.conf that this script did not write is a real cluster's:
# it is left alone and this script stops.
if [ -e "$conf" ] && ! grep -qF "$marker" "$conf"; then
  echo "local-cluster.sh: $conf exists and was not written by this script; not touching it" \
       "(move it away to start the local test cluster)" >&2
  exit 1
fi
host="$(hostname)"
node="$(slurmd -C | head -1)"  # NodeName=<host> CPUs=... RealMemory=... (this machine)
new="$(mktemp)"
cat >"$new" <<CONF
$marker
ClusterName=hpo-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# No cgroups (a container): track processes by parent pid, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
# Seconds between the SIGTERM of a cancelled, preempted or timed-out job and its SIGKILL:
# the worker fails and re-queues its trial within them.
KillWait=30
SchedulerType=sched/backfill
# Schedule every few seconds (default 60 s for the main loop, 30 s for backfill): a test
# cluster starts a released, requeued task at once.
SchedulerParameters=sched_interval=2,bf_interval=2
$node State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
changed=0
if ! cmp -s "$new" "$conf" 2>/dev/null; then
  $sudo mkdir -p /etc/slurm
  $sudo cp "$new" "$conf"
  changed=1
fi
rm -f "$new"
$sudo mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if [ "$changed" = 1 ]; then
  # A new configuration: restart whatever this script started before.
  for pidfile in /run/slurmd.pid /run/slurmctld.pid; do
    if running "$pidfile"; then $sudo kill "$(cat "$pidfile")"; fi
  done
  sleep 1
fi
running /run/slurmctld.pid || $sudo slurmctld
for _ in $(seq 1 30); do scontrol ping 2>/dev/null | grep -q "is UP" && break; sleep 0.5; done
running /run/slurmd.pid || $sudo slurmd

# Wait for the node to take jobs (a node left DOWN by an earlier run is resumed).
for _ in $(seq 1 60); do
  state="$(sinfo -h -N -n "$host" -o %T 2>/dev/null | head -1)"
  case "$state" in
    idle|mixed|allocated|completing) echo "local Slurm cluster up: $host ($state)"; exit 0 ;;
    down*|drain*) $sudo scontrol update nodename="$host" state=resume 2>/dev/null || true ;;
  esac
  sleep 1
done
echo "local-cluster.sh: node $host never became idle (state: ${state:-none});" \
     "see /var/log/slurm/slurmctld.log and slurmd.log" >&2
exit 1
