#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, with accounting: `blast run-ladder --executor slurm`
# on a laptop or workstation, and the cluster the test suite submits to (tests/test_slurm.py).
#
#   scripts/slurm-local.sh start    install (once) and start munged, MariaDB, slurmdbd, slurmctld
#                                   and slurmd; return when sinfo shows the node idle
#   scripts/slurm-local.sh stop     stop exactly the daemons `start` started (their pid files)
#   scripts/slurm-local.sh status   each daemon's state and sinfo
#
# Needs root (apt-get, and slurmd runs jobs as their user). Debian's slurm-wlm 22.05, munge and
# mariadb-server. The configuration is written to /etc/slurm (where sbatch, squeue and sacct look
# for it) and refuses to replace one it did not write; the daemons' state, logs and pid files live
# in $BLAST_SLURM_DIR (default /var/lib/blast-slurm). Accounting (slurmdbd on MariaDB) is what lets
# submitit ask sacct for a job's state: without it a killed job stays UNKNOWN and a waiting
# `--wait` never returns.
set -euo pipefail

STATE=${BLAST_SLURM_DIR:-/var/lib/blast-slurm}
CONF=/etc/slurm
MARK="# written by blast scripts/slurm-local.sh"
DB_SOCKET=/run/mysqld/mysqld.sock
PACKAGES=(munge mariadb-server slurmctld slurmd slurmdbd slurm-client)

die() { echo "slurm-local: $*" >&2; exit 1; }
say() { echo "slurm-local: $*"; }

install() {
  local need=()
  for pkg in "${PACKAGES[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
  [ ${#need[@]} -eq 0 ] && return
  say "installing ${need[*]}"
  apt-get update -q >/dev/null
  # The packages' own services are not started here (no init system); this script starts them.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" \
    >/dev/null
}

# The node as slurmd sees it: CPUs, sockets, cores, threads and memory.
node_line() {
  local probe cpus sockets cores threads mem
  probe=$(slurmd -C 2>/dev/null | head -1)
  cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$probe")
  sockets=$(sed -n 's/.*SocketsPerBoard=\([0-9]*\).*/\1/p' <<<"$probe")
  cores=$(sed -n 's/.*CoresPerSocket=\([0-9]*\).*/\1/p' <<<"$probe")
  threads=$(sed -n 's/.*ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$probe")
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$probe")
  echo "NodeName=localhost NodeAddr=127.0.0.1 CPUs=${cpus:-$(nproc)} Sockets=${sockets:-1}" \
       "CoresPerSocket=${cores:-$(nproc)} ThreadsPerCore=${threads:-1}" \
       "RealMemory=${mem:-1024} State=UNKNOWN"
}

write_conf() {
  mkdir -p "$CONF" "$STATE"/{ctld,spool}
  for f in slurm.conf slurmdbd.conf; do
    if [ -e "$CONF/$f" ] && ! grep -qF "$MARK" "$CONF/$f"; then
      die "$CONF/$f exists and was not written by this script: not replacing it"
    fi
  done
  cat >"$CONF/slurm.conf" <<EOF
$MARK
ClusterName=blast-local
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job waits out the credential lifetime before it may start again (default 120 s).
AuthInfo=cred_expire=10
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
JobRequeue=1
# A requeued job may start again at once (the default holds it for 2 minutes).
SchedulerParameters=bf_interval=5,sched_interval=2
KillWait=30
MinJobAge=600
ReturnToService=2
SlurmdTimeout=60
$(node_line)
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$CONF/slurmdbd.conf" <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=blast_slurm_acct
StorageUser=slurm
StoragePass=blast-local
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/slurmdbd.log
EOF
  chmod 600 "$CONF/slurmdbd.conf"
}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() {  # seconds, description, command...
  local t=$1 what=$2; shift 2
  for _ in $(seq $((t * 4))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  die "$what did not come up in ${t}s (logs in $STATE)"
}

start_munge() {
  if [ -S /run/munge/munge.socket.2 ] && munge -n </dev/null >/dev/null 2>&1; then return; fi
  mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
  [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create >/dev/null
  runuser -u munge -- munged --pid-file=/run/munge/munged.pid
  cp /run/munge/munged.pid "$STATE/munged.pid"
  wait_for 10 munged sh -c 'munge -n </dev/null | unmunge'
}

start_mariadb() {
  if [ -S "$DB_SOCKET" ] && mariadb-admin ping >/dev/null 2>&1; then return; fi
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
  nohup mariadbd --user=mysql --skip-networking --socket="$DB_SOCKET" \
    --pid-file=/run/mysqld/blast-mariadbd.pid >"$STATE/mariadb.log" 2>&1 &
  wait_for 60 MariaDB mariadb-admin ping
  cp /run/mysqld/blast-mariadbd.pid "$STATE/mariadb.pid"
}

start_cluster() {
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'blast-local';
              GRANT ALL ON blast_slurm_acct.* TO 'slurm'@'localhost';"
  alive "$STATE/slurmdbd.pid" || slurmdbd
  wait_for 30 slurmdbd sacctmgr -n list cluster
  sacctmgr -i -Q add cluster blast-local >/dev/null 2>&1 || true
  alive "$STATE/slurmctld.pid" || slurmctld
  wait_for 30 slurmctld scontrol ping
  alive "$STATE/slurmd.pid" || slurmd -N localhost
  wait_for 60 "the node" sh -c 'sinfo -h -n localhost -o %T | grep -qx idle'
}

stop_one() {  # name, pid file
  local pid
  alive "$2" || { rm -f "$2"; return 0; }
  pid=$(cat "$2")
  kill "$pid"
  for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$2"
  say "stopped $1 ($pid)"
}

status() {
  local up=0 f
  for f in munged mariadb slurmdbd slurmctld slurmd; do
    if alive "$STATE/$f.pid"; then echo "$f: running ($(cat "$STATE/$f.pid"))"
    else echo "$f: not started by this script"; up=1; fi
  done
  sinfo 2>/dev/null || { echo "sinfo: no controller answers"; up=1; }
  return $up
}

case "${1:-}" in
  start)
    [ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts slurmd)"
    install
    write_conf
    start_munge
    start_mariadb
    start_cluster
    say "up: node localhost idle (partition debug); state and logs in $STATE"
    ;;
  stop)
    # slurmd first, so no job step is left without its daemon; munged last.
    stop_one slurmd "$STATE/slurmd.pid"
    stop_one slurmctld "$STATE/slurmctld.pid"
    stop_one slurmdbd "$STATE/slurmdbd.pid"
    stop_one mariadb "$STATE/mariadb.pid"
    stop_one munged "$STATE/munged.pid"
    ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
