#!/usr/bin/env bash
# Throw-away Slurm cluster on ONE Debian 12 machine, for ista's tests and CI (.ci/run). Run as root.
#   bash tests/cluster/slurm-test-cluster.sh up      # start it (prints the SLURM_CONF to export)
#   bash tests/cluster/slurm-test-cluster.sh down    # stop everything it started (by PID), remove the netns
# Settings (env vars):
#   MODE=netns   two nodes n1,n2 in network+UTS+mount namespaces, own IPs 10.250.0.11/.12 on a
#                bridge (default; realistic: hostnames n1/n2 resolve inside jobs, so
#                submitit's TorchDistributedEnvironment works unchanged)
#   MODE=multi   two slurmd "nodes" node1,node2 on 127.0.0.1 (ports 17001/17002); node names
#                do NOT resolve, so MASTER_ADDR must come from `scontrol show node X` NodeAddr
#   MODE=single  one node "localhost" on 127.0.0.1
#   ACCT=1       also run MariaDB + slurmdbd so that `sacct` works (submitit polls sacct; without
#                it submitit logs warnings and never notices a cancelled/killed job). ACCT=0: none.
#   SLURM_CI_DIR (default /tmp/slurm-ci)
set -euo pipefail
S=${SLURM_CI_DIR:-/tmp/slurm-ci}
MODE=${MODE:-netns}
ACCT=${ACCT:-1}
SUBNET=10.250.0
cmd=${1:-up}

down() {
  if [ -f "$S/pids" ]; then
    tac "$S/pids" | while read -r name pid; do
      kill "$pid" 2>/dev/null && echo "stopped $name ($pid)" || true
    done
    sleep 2
    tac "$S/pids" | while read -r name pid; do kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true; done
    rm -f "$S/pids"
  fi
  for n in 1 2; do
    ip netns del slurmci_n$n 2>/dev/null || true
    ip link del slurmci_v$n 2>/dev/null || true
    rm -rf /etc/netns/slurmci_n$n
  done
  ip link del slurmcibr0 2>/dev/null || true
}

bg() { # bg NAME CMD... : start in background, log to $S/log/NAME.out, remember PID
  local name=$1; shift
  "$@" > "$S/log/$name.out" 2>&1 &
  echo "$name $!" >> "$S/pids"
}

wait_for() { # wait_for SECONDS CMD... : poll until CMD succeeds
  local t=$1; shift; local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $end ] && { echo "timeout waiting for: $*" >&2; return 1; }
    sleep 0.2
  done
}

up() {
  local T0=$SECONDS
  pkgs="slurm-wlm munge"; [ "$ACCT" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
  # shellcheck disable=SC2086
  dpkg -s $pkgs >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs; }
  echo "packages ready after $((SECONDS - T0)) s"
  down >/dev/null 2>&1 || true
  rm -rf "$S"; mkdir -p "$S"/{state,spool,log}; : > "$S/pids"
  export SLURM_CONF=$S/slurm.conf

  # ---- munge (one key shared by all "nodes": same filesystem) ----
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 600 /etc/munge/munge.key
  mkdir -p /run/munge && chown munge:munge /run/munge
  bg munged setpriv --reuid=munge --regid=munge --clear-groups /usr/sbin/munged -F
  wait_for 10 sh -c 'munge -n | unmunge'

  # ---- network namespaces (MODE=netns) ----
  if [ "$MODE" = netns ]; then
    ip link add slurmcibr0 type bridge
    ip addr add $SUBNET.1/24 dev slurmcibr0
    ip link set slurmcibr0 up
    for n in 1 2; do
      ip netns add slurmci_n$n
      ip link add slurmci_v$n type veth peer name eth0 netns slurmci_n$n
      ip link set slurmci_v$n master slurmcibr0 && ip link set slurmci_v$n up
      ip netns exec slurmci_n$n ip addr add $SUBNET.1$n/24 dev eth0
      ip netns exec slurmci_n$n ip link set eth0 up
      ip netns exec slurmci_n$n ip link set lo up
      mkdir -p /etc/netns/slurmci_n$n
      printf '127.0.0.1 localhost\n%s.1 ctl\n%s.11 n1\n%s.12 n2\n' $SUBNET $SUBNET $SUBNET > /etc/netns/slurmci_n$n/hosts
    done
  fi

  # ---- accounting: MariaDB on 127.0.0.1:3306 + slurmdbd on 127.0.0.1:6819 ----
  if [ "$ACCT" = 1 ]; then
    mkdir -p "$S/db"
    mariadb-install-db --user=root --datadir="$S/db/data" --auth-root-authentication-method=socket > "$S/log/mariadb-install.out" 2>&1
    bg mariadbd /usr/sbin/mariadbd --user=root --datadir="$S/db/data" --socket="$S/db/mysqld.sock" \
        --bind-address=127.0.0.1 --port=3306 --pid-file="$S/db/mysqld.pid" --log-error="$S/log/mariadbd.err"
    wait_for 30 mariadb -S "$S/db/mysqld.sock" -e 'select 1'
    mariadb -S "$S/db/mysqld.sock" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmci';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
    cat > "$S/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=slurmci
LogFile=$S/log/slurmdbd.log
PidFile=$S/slurmdbd.pid
EOF
    chmod 600 "$S/slurmdbd.conf"   # slurmdbd reads slurmdbd.conf from the folder of $SLURM_CONF
    bg slurmdbd /usr/sbin/slurmdbd -D
    wait_for 30 bash -c 'exec 3<>/dev/tcp/127.0.0.1/6819'
    ACCTCONF="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819"
  else
    ACCTCONF="AccountingStorageType=accounting_storage/none"
  fi

  # ---- slurm.conf ----
  local cpus mem ctl
  cpus=$(nproc); mem=$(( $(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) / 2 - 512 ))
  case $MODE in
    netns)  ctl="localhost($SUBNET.1)"
            NODES="NodeName=n1 NodeAddr=$SUBNET.11 CPUs=$cpus RealMemory=$mem State=UNKNOWN
NodeName=n2 NodeAddr=$SUBNET.12 CPUs=$cpus RealMemory=$mem State=UNKNOWN"; PNODES=n1,n2 ;;
    multi)  ctl="localhost(127.0.0.1)"
            NODES="NodeName=node1 NodeHostname=localhost NodeAddr=127.0.0.1 Port=17001 CPUs=$cpus RealMemory=$mem State=UNKNOWN
NodeName=node2 NodeHostname=localhost NodeAddr=127.0.0.1 Port=17002 CPUs=$cpus RealMemory=$mem State=UNKNOWN"; PNODES=node1,node2 ;;
    single) ctl="localhost(127.0.0.1)"
            NODES="NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN"; PNODES=localhost ;;
    *) echo "unknown MODE=$MODE" >&2; exit 2 ;;
  esac
  cat > "$SLURM_CONF" <<EOF
ClusterName=ci
SlurmctldHost=$ctl
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
$ACCTCONF
JobCompType=jobcomp/none
SchedulerType=sched/backfill
# Schedule every second, not every 60 (the default): a requeued job the test releases starts at once.
SchedulerParameters=sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool/%n
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.%n.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.%n.log
MinJobAge=3600
KillWait=5
InactiveLimit=0
$NODES
PartitionName=debug Nodes=$PNODES Default=YES MaxTime=INFINITE State=UP
EOF

  # ---- daemons ----
  bg slurmctld /usr/sbin/slurmctld -D -i -f "$SLURM_CONF"
  case $MODE in
    single) bg slurmd /usr/sbin/slurmd -D -N localhost -f "$SLURM_CONF" ;;
    multi)  for n in 1 2; do bg slurmd-node$n /usr/sbin/slurmd -D -N node$n -f "$SLURM_CONF"; done ;;
    netns)  # own mount ns (for /etc/hosts), own UTS ns (hostname nN), the node's net ns.
            # NB: `ip netns exec` is NOT used: it remounts /sys and hides /sys/fs/cgroup,
            # and slurmd then dies with "Unable to initialize cgroup plugin".
            for n in 1 2; do
              bg slurmd-n$n unshare -m -u --propagation private sh -c \
                "hostname n$n && mount --bind /etc/netns/slurmci_n$n/hosts /etc/hosts && exec nsenter --net=/run/netns/slurmci_n$n /usr/sbin/slurmd -D -f $SLURM_CONF"
            done ;;
  esac
  local want; want=$(echo "$PNODES" | tr ',' '\n' | wc -l)
  wait_for 60 bash -c "[ \"\$(sinfo -h -N -t idle -o %N | sort -u | wc -l)\" = $want ]"
  sinfo
  echo "cluster MODE=$MODE ACCT=$ACCT up in $((SECONDS - T0)) s;  export SLURM_CONF=$SLURM_CONF"
}

case $cmd in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
