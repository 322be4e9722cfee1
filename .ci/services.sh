#!/usr/bin/env bash
# Starts the services the cluster tests need, on this machine, by hand (no systemd): a one-node SLURM
# with accounting (munge, MariaDB on 127.0.0.1, slurmdbd, slurmctld, slurmd) and a PostgreSQL 15 server
# on 127.0.0.1 with password auth. Debian 12, as root. Safe to run again: what already runs is kept.
#
#   bash .ci/services.sh [ENV_FILE]       # default ENV_FILE: .ci/services.env
#   bash .ci/services.sh stop [ENV_FILE]  # stops the daemons this script started (not those it found
#                                         # running), newest first, and removes ENV_FILE
#
# ENV_FILE then holds what the tests read (source it with `set -a; . ENV_FILE; set +a`):
#   LORASWEEP_TEST_PG_URL=...       a PostgreSQL URL without the password ...
#   PGPASSFILE=...                  ... which libpq reads from this file
# (the tests find SLURM themselves: sinfo and sacct answer)
set -euo pipefail

MODE=start
if [ "${1:-}" = stop ]; then MODE=stop; shift; fi
ENV_FILE=${1:-"$(cd "$(dirname "$0")" && pwd)/services.env"}
STATE=/var/lib/lorasweep-ci                  # generated secrets, the PostgreSQL data dir, logs
STARTED=$STATE/started                       # the daemons this script started, one a line, oldest first
CLUSTER=lorasweep-ci
PG_PORT=${LORASWEEP_CI_PG_PORT:-55432}
PG_BIN=/usr/lib/postgresql/15/bin
PG_DATA=$STATE/pg
PG_DB=lorasweep_test
WAIT_S=60

say() { echo "[services $(date +%T)] $*"; }
die() { echo "[services] FAILED: $*" >&2; exit 1; }

# wait_for SECONDS WHAT COMMAND...: polls COMMAND once a second; fails with WHAT and the log hint
wait_for() {
    local seconds=$1 what=$2; shift 2
    for ((i = 0; i < seconds; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    die "$what not ready after ${seconds}s"
}

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts daemons)"

started() {  # started NAME: notes that this script started daemon NAME, for `stop`
    grep -qx "$1" "$STARTED" 2>/dev/null || echo "$1" >>"$STARTED"
}

# stop_pid NAME PIDFILE: ends the daemon whose pid PIDFILE holds and waits until it has exited
stop_pid() {
    local pid
    pid=$(cat "$2" 2>/dev/null) || { say "$1: no pid file $2, not running"; return 0; }
    if kill "$pid" 2>/dev/null; then
        wait_for $WAIT_S "$1 to stop" sh -c "! kill -0 $pid"
    fi
    rm -f "$2"
}

stop_one() {
    case $1 in
        postgres) runuser -u postgres -- $PG_BIN/pg_ctl -D "$PG_DATA" -m fast -w -t $WAIT_S stop >/dev/null \
                      || say "postgres: pg_ctl stop failed (not running?)" ;;
        slurmd) stop_pid slurmd /run/slurmd.pid ;;
        slurmctld) stop_pid slurmctld /run/slurmctld.pid ;;
        slurmdbd) stop_pid slurmdbd /run/slurmdbd.pid ;;
        mariadb) mariadb-admin shutdown 2>/dev/null || say "mariadb: not running" ;;
        munge) stop_pid munged /run/munge/munged.pid ;;
        *) say "unknown entry '$1' in $STARTED, left alone" ;;
    esac
}

stop_services() {
    if [ ! -s "$STARTED" ]; then
        say "nothing to stop: this script started no daemon ($STARTED is empty or absent)"
    else
        local name
        for name in $(tac "$STARTED"); do
            say "stopping $name"
            stop_one "$name"
        done
        rm -f "$STARTED"
    fi
    rm -f "$ENV_FILE"
    say "stopped; removed $ENV_FILE"
}

if [ $MODE = stop ]; then
    stop_services
    exit 0
fi

install_packages() {
    local missing=()
    command -v munged >/dev/null || missing+=(munge)
    command -v slurmctld >/dev/null || missing+=(slurm-wlm)
    command -v slurmdbd >/dev/null || missing+=(slurmdbd)
    command -v mariadbd >/dev/null || missing+=(mariadb-server)
    [ -x $PG_BIN/initdb ] || missing+=(postgresql-15)
    [ ${#missing[@]} = 0 ] && return 0
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -qq update
    apt-get -qq install -y --no-install-recommends "${missing[@]}" >/dev/null
}

secret() {  # a random password kept in $STATE/NAME, the same on every run
    local file=$STATE/$1
    [ -s "$file" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$file")
    cat "$file"
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    [ -s /etc/munge/munge.key ] || { mungekey --create --keyfile=/etc/munge/munge.key && chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key; }
    install -d -o munge -g munge -m 755 /run/munge
    runuser -u munge -- munged
    started munge
    wait_for $WAIT_S "munged (see /var/log/munge/munged.log)" sh -c 'munge -n | unmunge'
}

start_mariadb() {
    if mariadb-admin ping >/dev/null 2>&1; then return 0; fi
    install -d -o mysql -g mysql /run/mysqld
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
    nohup mariadbd --user=mysql --bind-address=127.0.0.1 --port=3306 >"$STATE/mariadb.log" 2>&1 &
    started mariadb
    wait_for $WAIT_S "MariaDB (see $STATE/mariadb.log)" mariadb-admin ping
}

start_slurmdbd() {
    local password; password=$(secret slurmdbd.pass)
    mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$password';
                ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$password';
                GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
    install -d -m 755 /etc/slurm /var/log/slurm /var/spool/slurmctld /var/spool/slurmd
    (umask 077 && cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$password
StorageLoc=slurm_acct_db
EOF
)
    write_slurm_conf  # sacctmgr finds slurmdbd through it
    if ! sacctmgr -n list cluster >/dev/null 2>&1; then
        slurmdbd
        started slurmdbd
        wait_for $WAIT_S "slurmdbd (see /var/log/slurm/slurmdbd.log)" sacctmgr -n list cluster
    fi
    sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
}

write_slurm_conf() {  # running daemons are stopped when it changes (start_slurm starts them)
    local host cpus memory
    host=$(hostname -s)
    cpus=$(nproc)
    memory=$(( $(free -m | awk '/^Mem:/ {print $2}') - 1024 ))
    cat >/etc/slurm/slurm.conf.new <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
ReturnToService=2
MinJobAge=600
KillWait=10
# a requeued job (a time limit, a preemption) waits cred_expire seconds before it may start again (120
# by default), and then for the main scheduling loop, which runs every sched_interval seconds (60 by
# default; the backfill loop does not look at a job whose begin time just passed): both kept short
AuthInfo=cred_expire=20
SchedulerParameters=sched_interval=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    if cmp -s /etc/slurm/slurm.conf.new /etc/slurm/slurm.conf; then
        rm /etc/slurm/slurm.conf.new
        return 0
    fi
    mv /etc/slurm/slurm.conf.new /etc/slurm/slurm.conf
    if scontrol ping 2>/dev/null | grep -q UP; then  # AuthInfo is read at start only: restart the daemons
        say "slurm.conf changed: restarting slurmctld and slurmd (running jobs go on)"
        scontrol shutdown
        wait_for $WAIT_S "slurmctld to stop" sh -c '! scontrol ping | grep -q UP'
        wait_for $WAIT_S "slurmd to stop" sh -c '! pgrep -F /run/slurmd.pid'
    fi
}

start_slurm() {
    if ! scontrol ping 2>/dev/null | grep -q UP; then
        slurmctld
        started slurmctld
        wait_for $WAIT_S "slurmctld (see /var/log/slurm/slurmctld.log)" sh -c 'scontrol ping | grep -q UP'
    fi
    pgrep -F /run/slurmd.pid >/dev/null 2>&1 || { slurmd && started slurmd; }
    wait_for $WAIT_S "the SLURM node (sinfo; see /var/log/slurm/slurmd.log)" node_ready
}

node_ready() {  # the node takes jobs; a node left drained or down by an earlier run is resumed
    case "$(sinfo -h -o %t | head -1)" in
        idle | mix | alloc) return 0 ;;
        drain | drng | down) scontrol update NodeName="$(hostname -s)" State=RESUME ;;
    esac
    return 1
}

start_postgres() {
    local password; password=$(secret pg.pass)
    if [ ! -s "$PG_DATA/PG_VERSION" ]; then
        install -d -o postgres -g postgres -m 700 "$PG_DATA"
        install -o postgres -m 600 "$STATE/pg.pass" "$STATE/pg.initpw"
        runuser -u postgres -- $PG_BIN/initdb -D "$PG_DATA" -U postgres --auth=scram-sha-256 \
            --pwfile="$STATE/pg.initpw" >"$STATE/initdb.log"
        rm -f "$STATE/pg.initpw"
    fi
    if ! runuser -u postgres -- $PG_BIN/pg_ctl -D "$PG_DATA" status >/dev/null 2>&1; then
        install -d -o postgres -g postgres -m 700 "$STATE/pglog"
        runuser -u postgres -- $PG_BIN/pg_ctl -D "$PG_DATA" -l "$STATE/pglog/postgres.log" -w -t $WAIT_S start \
            -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k /tmp" >/dev/null \
            || die "PostgreSQL did not start (see $STATE/pglog/postgres.log)"
        started postgres
    fi
    (umask 077 && echo "127.0.0.1:$PG_PORT:*:postgres:$password" >"$STATE/pgpass")
    export PGPASSFILE=$STATE/pgpass
    wait_for $WAIT_S "PostgreSQL on 127.0.0.1:$PG_PORT" psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c 'select 1'
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc "select 1 from pg_database where datname = '$PG_DB'" | grep -q 1 \
        || psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc "create database $PG_DB"
}

mkdir -p $STATE && chmod 711 $STATE  # postgres reaches its data dir; secrets stay root-only (600)
start=$SECONDS
install_packages
say "packages ready ($((SECONDS - start)) s)"
start_munge
start_mariadb
start_slurmdbd
start_slurm
say "SLURM up with accounting: $(sinfo -h -o '%P %D nodes %c CPUs %t')"
start_postgres
say "PostgreSQL up on 127.0.0.1:$PG_PORT ($((SECONDS - start)) s in all)"

cat >"$ENV_FILE" <<EOF
LORASWEEP_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/$PG_DB
PGPASSFILE=$STATE/pgpass
EOF
say "wrote $ENV_FILE"
