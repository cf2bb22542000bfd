#!/bin/sh
# kernel-path-guest.sh -- guest half of tests/vm/bench-kernel-path.sh (one VM boot).
# Args: SIZE_MB RUNTIME_S REPS
# Four backstores of the same size behind tcm_loop, all with the initiator's max_sectors_kb
# at 512 (hw_max_sectors=1024 for the TCMU ones, which also share max_data_area_mb):
#   thin   tcmud, dev_config thin/bench/vol        (pool on tmpfs)
#   file   tcmud, dev_config file//tmp/b/file.img  (raw file on tmpfs)
#   runner tcmu-runner 1.5.4, qcow//tmp/b/runner.img (its qcow handler on a raw image)
#   fileio the kernel's own fileio backstore on /tmp/b/fileio.img
# Every LUN is first filled with the same data. Then, REPS times, each workload runs on
# each backend in turn (interleaved): fio libaio direct iodepth 32, time based.
# Prints "BENCH <backend> <workload> <rep> <iops> <KiB/s>" lines for the host to aggregate.
. /vmlab/tcmud-lib.sh

SIZE_MB=${1:-192} RT=${2:-5} REPS=${3:-3}
MB=1048576
SIZE=$((SIZE_MB * MB))
COMMON="hw_max_sectors=1024 max_data_area_mb=256 nl_reply_supported=-1"
mkdir -p /tmp/b
for f in file runner fileio; do truncate -s "$SIZE" /tmp/b/$f.img; done

TCMUD_LOG_LEVEL=warn
tcmud_write_config bench:$((SIZE_MB * 2))MiB:64KiB
tcmud_start
tcmu-runner > /tmp/runner.out 2>&1 &
RPID=$!
sleep 2
kill -0 $RPID || { cat /tmp/runner.out; fail "tcmu-runner exited"; }

# shellcheck disable=SC2086
SD_thin=$(lun_create user_1 thin $SIZE thin/bench/vol 0 $COMMON) || { diag; fail "thin LUN"; }
# shellcheck disable=SC2086
SD_file=$(lun_create user_1 file $SIZE file//tmp/b/file.img 1 $COMMON) || { diag; fail "file LUN"; }
# shellcheck disable=SC2086
SD_runner=$(lun_create user_2 runner $SIZE qcow//tmp/b/runner.img 2 $COMMON) || { diag; fail "tcmu-runner LUN"; }
F=$CFG/core/fileio_1/fileio
mkdir -p $F || fail "fileio mkdir"
echo "fd_dev_name=/tmp/b/fileio.img,fd_dev_size=$SIZE" > $F/control || fail "fileio control"
echo 1 > $F/enable || fail "fileio enable"
SD_fileio=$(loop_attach $F 3 60) || fail "fileio LUN"
for b in thin file runner fileio; do
    eval sd=\$SD_$b
    echo 512 > /sys/block/${sd#/dev/}/queue/max_sectors_kb
    vmsg "$b: $sd max_sectors_kb=$(cat /sys/block/${sd#/dev/}/queue/max_sectors_kb) nr_requests=$(cat /sys/block/${sd#/dev/}/queue/nr_requests)"
done

dd if=/dev/urandom of=/tmp/b/fill bs=1M count=16 2>/dev/null
for b in thin file runner fileio; do
    eval sd=\$SD_$b
    i=0
    while [ $i -lt "$SIZE_MB" ]; do
        dd if=/tmp/b/fill of="$sd" bs=1M seek=$i oflag=direct 2>/dev/null || fail "fill $b"
        i=$((i + 16))
    done
done
vmsg "all LUNs filled"

rep=1
while [ $rep -le "$REPS" ]; do
    for w in randread4k randwrite4k read1m write1m; do
        case $w in
            randread4k) rw=randread bs=4k;;  randwrite4k) rw=randwrite bs=4k;;
            read1m) rw=read bs=1M;;          write1m) rw=write bs=1M;;
        esac
        for b in thin file runner fileio; do
            eval sd=\$SD_$b
            fio --name=$w --filename="$sd" --direct=1 --ioengine=libaio --iodepth=32 --rw=$rw \
                --bs=$bs --size="$SIZE" --runtime="$RT" --time_based --ramp_time=1 --norandommap \
                --randrepeat=0 --output-format=terse --terse-version=3 > /tmp/fio.out 2>&1 ||
                { cat /tmp/fio.out; diag; fail "fio $w on $b"; }
            case $rw in
                *read) awk -F';' -v b=$b -v w=$w -v r=$rep '/^3;/{print "BENCH", b, w, r, $8, $7}' /tmp/fio.out;;
                *)     awk -F';' -v b=$b -v w=$w -v r=$rep '/^3;/{print "BENCH", b, w, r, $49, $48}' /tmp/fio.out;;
            esac
        done
    done
    rep=$((rep + 1))
done
tcmud_alive || fail "tcmud died during the benchmark"
kill -0 $RPID || fail "tcmu-runner died during the benchmark"
dmesg | grep -iE 'I/O error|ring broken' && fail "kernel errors during the benchmark"
vmsg "benchmark done"
exit 0
