#!/usr/bin/env bash
# A single-node Slurm on this machine for the `slurm` placement tests: Debian's slurm-wlm and munge, a
# munge key, /etc/slurm/slurm.conf naming this host (its cores, a little under its memory), and munged,
# slurmctld and slurmd started by hand (no systemd here). Idempotent and quiet: a running, answering
# Slurm with the same configuration is left alone. Run as root.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1 || ! command -v sbatch >/dev/null 2>&1; then
  apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends slurm-wlm munge >/dev/null; }
fi

node=$(hostname -s)
cpus=$(nproc)
mem=$(( $(free -m | awk '/^Mem:/ {print $2}') * 9 / 10 ))
conf=$(cat <<CONF
ClusterName=sbxtest
SlurmctldHost=$node
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdTimeout=30
NodeName=$node CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
CONF
)

changed=false
mkdir -p /etc/slurm /etc/munge /var/log/munge /run/munge /var/lib/munge /var/spool/slurmctld /var/spool/slurmd \
  /var/log/slurm
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  changed=true
fi
chown -R munge:munge /etc/munge /var/log/munge /run/munge /var/lib/munge
chmod 0400 /etc/munge/munge.key
chown slurm:slurm /var/spool/slurmctld /var/log/slurm
if [ "$(cat /etc/slurm/slurm.conf 2>/dev/null)" != "$conf" ]; then
  printf '%s\n' "$conf" >/etc/slurm/slurm.conf
  changed=true
fi

running() { pgrep -x "$1" >/dev/null 2>&1; }
stop() { # by the pid its daemon recorded
  local pid
  pid=$(cat "$2" 2>/dev/null || true)
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  for _ in $(seq 50); do running "$1" || return 0; sleep 0.1; done
}

if [ "$changed" = true ]; then
  stop slurmd /run/slurmd.pid
  stop slurmctld /run/slurmctld.pid
fi
running munged || su -s /bin/sh munge -c /usr/sbin/munged
running slurmctld || /usr/sbin/slurmctld
running slurmd || /usr/sbin/slurmd
for _ in $(seq 100); do
  state=$(sinfo --noheader --format '%T' 2>/dev/null | head -1)
  case "$state" in idle|mixed|allocated) exit 0 ;; down*|drain*) scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true ;; esac
  sleep 0.2
done
echo "slurm did not come up: sinfo says '${state:-nothing}'" >&2
tail -5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
