use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn runs_jobs_concurrently_and_survives_panics() {
    let pool = IoPool::new("t", 3).unwrap();
    let lane = pool.lane(3);
    assert!(lane.spawn(|| panic!("boom")));
    let (tx, rx) = mpsc::channel();
    // Three jobs that each wait for the others: only completes when they
    // run at the same time on different threads.
    let barrier = Arc::new(std::sync::Barrier::new(3));
    for i in 0..3 {
        let (tx, b) = (tx.clone(), Arc::clone(&barrier));
        assert!(lane.spawn(move || {
            b.wait();
            tx.send(i).unwrap();
        }));
    }
    let mut got: Vec<i32> = (0..3).map(|_| rx.recv_timeout(WAIT).unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, vec![0, 1, 2]);
}

#[test]
fn a_panicking_job_leaves_the_shared_threads_to_other_lanes() {
    let pool = IoPool::new("t", 1).unwrap();
    let (bad, good) = (pool.lane(1), pool.lane(1));
    for _ in 0..3 {
        assert!(bad.spawn(|| panic!("backstore bug")));
    }
    let (tx, rx) = mpsc::channel();
    assert!(good.spawn(move || tx.send(7).unwrap()));
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), 7);
    assert_eq!(pool.owner.shared.lock().alive, 1);
}

#[test]
fn every_job_runs_once_under_bursts() {
    // Bursts from several threads on lanes of their own, with sleeps in
    // between, so workers go idle and are woken again many times.
    let pool = IoPool::new("t", 4).unwrap();
    let (tx, rx) = mpsc::channel();
    let producers: Vec<_> = (0..3u32)
        .map(|p| {
            let (lane, tx) = (pool.lane(1 + p as usize), tx.clone());
            thread::spawn(move || {
                for burst in 0..50u32 {
                    for j in 0..(burst % 7) {
                        let tx = tx.clone();
                        assert!(lane.spawn(move || tx.send((p, burst, j)).unwrap()));
                    }
                    if burst % 5 == 0 {
                        thread::sleep(Duration::from_millis(1));
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    drop(tx);
    let want_n = 3 * (0..50u32).map(|b| b % 7).sum::<u32>() as usize;
    let mut got: Vec<(u32, u32, u32)> = Vec::new();
    while let Ok(v) = rx.recv_timeout(WAIT) {
        got.push(v);
        if got.len() == want_n {
            break;
        }
    }
    got.sort_unstable();
    let mut want: Vec<(u32, u32, u32)> = (0..3)
        .flat_map(|p| (0..50).flat_map(move |b| (0..b % 7).map(move |j| (p, b, j))))
        .collect();
    want.sort_unstable();
    assert_eq!(got, want);
}

/// Jobs that block until `open` is sent, counting how many started.
fn blocking_jobs(lane: &IoLane, n: usize, started: &Arc<AtomicUsize>) -> mpsc::Sender<()> {
    let (open_tx, open_rx) = mpsc::channel::<()>();
    let open_rx = Arc::new(Mutex::new(open_rx));
    for _ in 0..n {
        let (started, open_rx) = (Arc::clone(started), Arc::clone(&open_rx));
        assert!(lane.spawn(move || {
            started.fetch_add(1, Ordering::SeqCst);
            let _ = open_rx.lock().unwrap().recv();
        }));
    }
    open_tx
}

#[test]
fn a_blocked_lane_holds_at_most_its_limit_and_others_still_run() {
    // Three threads; the stuck lane may hold two. Without the limit its ten
    // queued jobs would take every thread and the other lane's jobs would
    // never run (this test would time out).
    let pool = IoPool::new("t", 3).unwrap();
    let (stuck, other) = (pool.lane(2), pool.lane(2));
    let started = Arc::new(AtomicUsize::new(0));
    let open = blocking_jobs(&stuck, 10, &started);
    let deadline = std::time::Instant::now() + WAIT;
    while started.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
        thread::yield_now();
    }
    let (tx, rx) = mpsc::channel();
    for i in 0..20 {
        let tx = tx.clone();
        assert!(other.spawn(move || tx.send(i).unwrap()));
    }
    let mut got: Vec<i32> = (0..20).map(|_| rx.recv_timeout(WAIT).unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    assert_eq!(
        started.load(Ordering::SeqCst),
        2,
        "the stuck lane started more jobs than its limit"
    );
    // Once it unblocks, its queued jobs all run.
    for _ in 0..10 {
        open.send(()).unwrap();
    }
    drop(open);
    let deadline = std::time::Instant::now() + WAIT;
    while started.load(Ordering::SeqCst) < 10 && std::time::Instant::now() < deadline {
        thread::yield_now();
    }
    assert_eq!(started.load(Ordering::SeqCst), 10);
}

#[test]
fn lanes_take_turns() {
    // One thread, held by a job of lane C while A and B queue three each:
    // then they run alternately, not A's three first.
    let pool = IoPool::new("t", 1).unwrap();
    let (a, b, c) = (pool.lane(4), pool.lane(4), pool.lane(1));
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    assert!(c.spawn(move || {
        entered_tx.send(()).unwrap();
        gate_rx.recv().unwrap();
    }));
    entered_rx.recv_timeout(WAIT).unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    for i in 0..3 {
        for (lane, name) in [(&a, 'a'), (&b, 'b')] {
            let order = Arc::clone(&order);
            assert!(lane.spawn(move || order.lock().unwrap().push((name, i))));
        }
    }
    let (tx, rx) = mpsc::channel();
    assert!(b.spawn(move || tx.send(()).unwrap()));
    gate_tx.send(()).unwrap();
    rx.recv_timeout(WAIT).unwrap();
    let got = order.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![('a', 0), ('b', 0), ('a', 1), ('b', 1), ('a', 2), ('b', 2)]
    );
}

#[test]
fn queued_jobs_finish_after_drop_and_spawn_fails_after() {
    let pool = IoPool::new("t", 1).unwrap();
    let lane = pool.lane(1);
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let (tx, rx) = mpsc::channel();
    // The single worker blocks in the first job while two more queue.
    assert!(lane.spawn(move || gate_rx.recv().unwrap()));
    for i in 0..2 {
        let tx = tx.clone();
        assert!(lane.spawn(move || tx.send(i).unwrap()));
    }
    let shared = Arc::clone(&pool.owner.shared);
    drop(pool);
    drop(lane);
    gate_tx.send(()).unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), 0);
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), 1);
    // The worker exits once the queue is empty.
    for _ in 0..1000 {
        if shared.lock().alive == 0 {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let s = shared.lock();
    assert_eq!(s.alive, 0);
    assert!(s.lanes.is_empty(), "the dropped lane was not removed");
}
