#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for tests and for trying molgen-grid without a cluster:
# slurmctld + slurmd + slurmdbd (accounting, so sacct and submitit see TIMEOUT / OUT_OF_MEMORY / CANCELLED)
# on MariaDB, with partitions h100, a100 and rtx3070 over the one node, each with one fake GPU (GRES).
#
#   bash sbatch/test-cluster.sh start    installs Debian's packages if missing, starts every daemon (idempotent)
#   bash sbatch/test-cluster.sh status   which daemons run, sinfo
#   bash sbatch/test-cluster.sh stop     stops them in order (slurmd, slurmctld, slurmdbd, MariaDB)
#   bash sbatch/test-cluster.sh wipe     stop, then delete all cluster state (job ids start again at 1)
#
# State lives under $MOLGEN_SLURM_DIR (default /var/tmp/molgen-grid-slurm); the config goes to /etc/slurm so
# that Slurm's commands work in any new shell. Needs root (it is meant for a throwaway machine or CI).
set -euo pipefail

DIR="${MOLGEN_SLURM_DIR:-/var/tmp/molgen-grid-slurm}"
CONF_DIR=/etc/slurm
NODE="$(hostname -s)"
DB_PORT="${MOLGEN_SLURM_DB_PORT:-3307}"
DB_SOCK="$DIR/mysql/mysqld.sock"
DB_PASS="molgen-grid-test"
# The node as Slurm sees it: more CPUs and memory than the machine has, so that jobs sized for real GPU nodes
# (conf/gpu/) are accepted; each partition's one fake GPU still runs one job at a time.
JOB_CPUS="${MOLGEN_SLURM_CPUS:-32}"
JOB_MEM_MB="${MOLGEN_SLURM_MEM_MB:-262144}"

say() { echo "test-cluster: $*" >&2; }

alive() {  # alive PIDFILE: the process named in it runs (a zombie does not count)
  local pid state
  [ -s "$1" ] || return 1
  pid="$(cat "$1" 2>/dev/null)" || return 1
  [ -r "/proc/$pid/stat" ] || return 1
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || echo Z)"
  [ "$state" != "Z" ]
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit="$1" what="$2"; shift 2
  for _ in $(seq 1 $((limit * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  say "timed out waiting for $what"; return 1
}

install_packages() {
  local missing=()
  command -v slurmctld >/dev/null || missing+=(slurm-wlm)
  command -v munged >/dev/null || missing+=(munge)
  command -v slurmdbd >/dev/null || missing+=(slurmdbd)
  command -v mariadbd >/dev/null || missing+=(mariadb-server)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

start_munge() {
  if [ ! -s /etc/munge/munge.key ]; then mungekey -c -k /etc/munge/munge.key; fi
  chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  if ! (munge -n | unmunge) >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --force
    wait_for 10 munge sh -c 'munge -n | unmunge'
  fi
}

start_mariadb() {
  mkdir -p "$DIR/mysql"
  if [ ! -d "$DIR/mysql/data/mysql" ]; then
    mariadb-install-db --no-defaults --datadir="$DIR/mysql/data" --user=root --auth-root-authentication-method=socket >/dev/null
  fi
  if ! alive "$DIR/mysql/mysqld.pid"; then
    setsid mariadbd --no-defaults --datadir="$DIR/mysql/data" --socket="$DB_SOCK" --port="$DB_PORT" \
      --bind-address=127.0.0.1 --user=root --pid-file="$DIR/mysql/mysqld.pid" \
      --log-error="$DIR/mysql/error.log" --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &
    wait_for 30 MariaDB mariadb --no-defaults --socket="$DB_SOCK" -e "select 1"
  fi
  mariadb --no-defaults --socket="$DB_SOCK" <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL
}

write_configs() {
  mkdir -p "$CONF_DIR" "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/dev"
  for i in 0 1 2; do [ -c "$DIR/dev/fakegpu$i" ] || mknod "$DIR/dev/fakegpu$i" c 1 3; done
  cat >"$CONF_DIR/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$DIR/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
CONF
  chmod 600 "$CONF_DIR/slurmdbd.conf"
  # Memory limits through cgroup v1, so that a job over its memory ends as OUT_OF_MEMORY, as on a real cluster.
  cat >"$CONF_DIR/cgroup.conf" <<CONF
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
IgnoreSystemd=yes
ConstrainRAMSpace=yes
ConstrainSwapSpace=yes
CONF
  cat >"$CONF_DIR/gres.conf" <<CONF
AutoDetect=off
NodeName=$NODE Name=gpu Type=h100 File=$DIR/dev/fakegpu0
NodeName=$NODE Name=gpu Type=a100 File=$DIR/dev/fakegpu1
NodeName=$NODE Name=gpu Type=rtx3070 File=$DIR/dev/fakegpu2
CONF
  cat >"$CONF_DIR/slurm.conf" <<CONF
# Written by molgen_grid's sbatch/test-cluster.sh: a one-node test cluster, not for production.
ClusterName=molgen
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
MpiDefault=none
ProctrackType=proctrack/cgroup
TaskPlugin=task/cgroup
ReturnToService=2
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmdSpoolDir=$DIR/spool
StateSaveLocation=$DIR/state
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=5,bf_interval=1,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
# Limits set with sacctmgr (MaxSubmitJobs on an association or a QOS) are enforced, as on a real site; every user
# that submits needs an association (start adds them).
AccountingStorageEnforce=associations,limits
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
MinJobAge=300
MaxArraySize=1001
# Room for a 10,000-cell benchmark beside the tests' jobs (each array task counts; cancelled ones for MinJobAge).
MaxJobCount=100000
KillWait=5
InactiveLimit=0
NodeName=$NODE CPUs=$JOB_CPUS RealMemory=$JOB_MEM_MB Gres=gpu:h100:1,gpu:a100:1,gpu:rtx3070:1 State=UNKNOWN
PartitionName=h100 Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
PartitionName=a100 Nodes=$NODE MaxTime=INFINITE State=UP
PartitionName=rtx3070 Nodes=$NODE MaxTime=INFINITE State=UP
CONF
}

node_ready() { sinfo -h -n "$NODE" -o %t 2>/dev/null | grep -Eq '^(idle|mix|alloc)'; }

start() {
  install_packages
  start_munge
  start_mariadb
  write_configs
  if ! alive "$DIR/slurmdbd.pid"; then
    slurmdbd
    wait_for 30 slurmdbd sacctmgr -n list cluster
  fi
  if ! alive "$DIR/slurmctld.pid"; then
    slurmctld
    wait_for 30 slurmctld scontrol ping
  fi
  if ! alive "$DIR/slurmd.pid"; then slurmd; fi
  if ! wait_for 15 "the node" node_ready; then
    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
    wait_for 15 "the node" node_ready
  fi
  wait_for 30 "accounting" sacct -n -X -S now
  # An account besides each user's default, so that a test can see `--account` reach Slurm (idempotent).
  sacctmgr -i add account lab >/dev/null 2>&1 || true
  sacctmgr -i add user "$(id -un)" account=lab >/dev/null 2>&1 || true
  # The tests' second user (tests/test_races.py runs as nobody): associations are enforced.
  sacctmgr -i add user nobody account=lab >/dev/null 2>&1 || true
  say "running: partitions $(sinfo -h -o %R | sort | paste -sd, -) on node $NODE ($JOB_CPUS job CPUs)"
}

stop_one() {  # stop_one PIDFILE NAME
  local pid
  alive "$1" || return 0
  pid="$(cat "$1" 2>/dev/null)" || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do alive "$1" || return 0; sleep 0.1; done
  say "$2 did not stop; killing it"; kill -9 "$pid" 2>/dev/null || true
}

stop() {
  stop_one "$DIR/slurmd.pid" slurmd
  stop_one "$DIR/slurmctld.pid" slurmctld
  stop_one "$DIR/slurmdbd.pid" slurmdbd
  stop_one "$DIR/mysql/mysqld.pid" MariaDB
  say "stopped"
}

status() {
  local name file rc=0
  for name in slurmctld slurmd slurmdbd mysql/mysqld; do
    file="$DIR/$name.pid"
    if alive "$file"; then echo "${name##*/}: running (pid $(cat "$file"))"; else echo "${name##*/}: stopped"; rc=1; fi
  done
  if [ $rc -eq 0 ]; then sinfo; fi
  return $rc
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  wipe) stop; rm -rf "$DIR"; say "wiped $DIR" ;;
  *) echo "usage: bash sbatch/test-cluster.sh start|stop|status|wipe" >&2; exit 2 ;;
esac
