//! Prometheus metrics: the daemon's devices and pools in the OpenMetrics
//! text format, served over HTTP at `http://<metrics>/metrics` when the
//! configuration names an address (off by default). Every scrape asks the
//! supervisor for its view (the same one `tcmud status` shows) and encodes
//! it; nothing is kept between scrapes. Names and labels: `docs/metrics.md`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tcmud_core::latency::HistogramSnapshot;
use tcmud_core::scsi::sense_key_name;

use super::daemon::View;
use super::ControlError;

/// Encodes the daemon's view on each scrape.
pub struct DaemonCollector {
    view: Arc<dyn View>,
    started: Instant,
}

impl std::fmt::Debug for DaemonCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonCollector").finish_non_exhaustive()
    }
}

impl DaemonCollector {
    /// A collector over `view`.
    pub fn new(view: Arc<dyn View>) -> DaemonCollector {
        DaemonCollector {
            view,
            started: Instant::now(),
        }
    }
}

type Labels = Vec<(&'static str, String)>;

fn counter(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for (labels, v) in rows {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(Labels, i64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
    for (labels, v) in rows {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// A histogram family in seconds (`name` gets the `_seconds` suffix).
fn histogram(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: &[(Labels, &HistogramSnapshot)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    for (labels, h) in rows {
        // The encoder sums the buckets itself: it wants each bucket's own count.
        let own: Vec<(f64, u64)> = h
            .buckets
            .iter()
            .scan(0u64, |below, &(le, n)| {
                let own = n.saturating_sub(*below);
                *below = n;
                Some((le, own))
            })
            .collect();
        m.encode_family(labels)?.encode_histogram::<NoLabelSet>(
            h.sum_seconds,
            h.count,
            &own,
            None,
        )?;
    }
    Ok(())
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Collector for DaemonCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let uptime = ConstGauge::new(self.started.elapsed().as_secs_f64());
        uptime.encode(enc.encode_descriptor(
            "tcmud_uptime_seconds",
            "Seconds since the daemon started",
            None,
            uptime.metric_type(),
        )?)?;
        let Ok(v) = self.view.view() else {
            // The supervisor did not answer: only the uptime, and the
            // scrape says so by the absence of tcmud_up.
            return Ok(());
        };
        gauge(
            &mut enc,
            "tcmud_up",
            "1 when the supervisor answered this scrape",
            &[(Vec::new(), 1)],
        )?;
        let dev = |d: &super::protocol::DeviceStatus| -> Labels {
            vec![
                ("minor", d.minor.to_string()),
                ("device", d.name.clone()),
                ("dev_config", d.dev_config.clone()),
            ]
        };
        let rows = |f: &dyn Fn(&super::protocol::DeviceStatus) -> u64| -> Vec<(Labels, u64)> {
            v.devices.iter().map(|d| (dev(d), f(d))).collect()
        };
        counter(
            &mut enc,
            "tcmud_device_commands",
            "Commands completed to the ring",
            &rows(&|d| d.completed),
        )?;
        counter(
            &mut enc,
            "tcmud_device_errors",
            "Commands completed with a status other than GOOD",
            &rows(&|d| d.errors),
        )?;
        counter(
            &mut enc,
            "tcmud_device_read_bytes",
            "Data-in bytes copied to the ring (read by the initiator)",
            &rows(&|d| d.bytes_in),
        )?;
        counter(
            &mut enc,
            "tcmud_device_written_bytes",
            "Data-out bytes copied from the ring (written by the initiator)",
            &rows(&|d| d.bytes_out),
        )?;
        counter(
            &mut enc,
            "tcmud_device_restarts",
            "Restarts of the device actor after a panic",
            &rows(&|d| d.restarts),
        )?;
        counter(
            &mut enc,
            "tcmud_device_ring_resets",
            "Ring resets from outside (action/reset_ring) detected and resynced",
            &rows(&|d| d.ring_resets),
        )?;
        counter(
            &mut enc,
            "tcmud_device_timed_out_commands",
            "Commands not executed because the kernel's cmd_time_out had passed (ABORTED COMMAND)",
            &rows(&|d| d.timed_out),
        )?;
        counter(
            &mut enc,
            "tcmud_device_task_management_requests",
            "Task management notifications from the kernel (aborts, LUN resets)",
            &rows(&|d| d.task_management),
        )?;
        counter(
            &mut enc,
            "tcmud_device_aborted_commands",
            "Commands a task management request cancelled before they ran",
            &rows(&|d| d.aborted),
        )?;
        let mut by_key: Vec<(Labels, u64)> = Vec::new();
        for d in &v.devices {
            for (key, n) in (0u8..).zip(d.sense_keys) {
                if n > 0 {
                    let mut l = dev(d);
                    l.push(("sense_key", sense_key_name(key).to_owned()));
                    by_key.push((l, n));
                }
            }
        }
        counter(
            &mut enc,
            "tcmud_device_check_conditions",
            "Commands completed with CHECK CONDITION, by sense key (keys seen so far)",
            &by_key,
        )?;
        let mut latency: Vec<(Labels, &HistogramSnapshot)> = Vec::new();
        for d in &v.devices {
            for (class, h) in &d.latency {
                let mut l = dev(d);
                l.push(("op", class.name().to_owned()));
                latency.push((l, h));
            }
        }
        histogram(
            &mut enc,
            "tcmud_device_command_duration",
            "Time from fetching a command off the ring to completing it, by operation class",
            &latency,
        )?;
        let in_flight: Vec<(Labels, i64)> = v
            .devices
            .iter()
            .map(|d| (dev(d), clamp(d.in_flight as u64)))
            .collect();
        gauge(
            &mut enc,
            "tcmud_device_in_flight",
            "Commands in flight",
            &in_flight,
        )?;
        let failed = clamp(v.failed.len() as u64);
        gauge(
            &mut enc,
            "tcmud_devices_failed",
            "Devices of ours not served (setup failed, or the device actor gave up)",
            &[(Vec::new(), failed)],
        )?;
        let (mut cap, mut alloc, mut low, mut open, mut free) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let pools = super::daemon::pool_statuses(&v.registries);
        let mut commits: Vec<(Labels, &HistogramSnapshot)> = Vec::new();
        let mut lookups: Vec<(Labels, u64)> = Vec::new();
        for p in &pools {
            let l: Labels = vec![("pool", p.name.clone())];
            if let Some(m) = p.mapping_lookups {
                for (result, n) in [("memo", m.hits), ("tree", m.misses)] {
                    let mut l = l.clone();
                    l.push(("result", result.to_owned()));
                    lookups.push((l, n));
                }
            }
            open.push((l.clone(), i64::from(p.open)));
            if let (Some(c), Some(a), Some(w), Some(f)) = (
                p.capacity_bytes,
                p.allocated_bytes,
                p.low_water,
                p.free_bytes,
            ) {
                cap.push((l.clone(), clamp(c)));
                alloc.push((l.clone(), clamp(a)));
                free.push((l.clone(), clamp(f)));
                low.push((l.clone(), i64::from(w)));
            }
            if let Some(h) = &p.commit_latency {
                commits.push((l, h));
            }
        }
        gauge(
            &mut enc,
            "tcmud_pool_open",
            "1 when the pool is open in the daemon",
            &open,
        )?;
        gauge(
            &mut enc,
            "tcmud_pool_capacity_bytes",
            "Data capacity of the pool",
            &cap,
        )?;
        gauge(
            &mut enc,
            "tcmud_pool_allocated_bytes",
            "Bytes of the pool allocated to volumes and snapshots",
            &alloc,
        )?;
        gauge(
            &mut enc,
            "tcmud_pool_free_bytes",
            "Bytes of the pool's capacity not allocated",
            &free,
        )?;
        histogram(
            &mut enc,
            "tcmud_pool_commit_duration",
            "Duration of the pool's metadata commits (flushes, write-through and FUA writes)",
            &commits,
        )?;
        counter(
            &mut enc,
            "tcmud_pool_mapping_lookups",
            "Lookups of a chunk's mapping (format-3 pools): answered by the mapping memo, or from the tree",
            &lookups,
        )?;
        gauge(
            &mut enc,
            "tcmud_pool_low_water",
            "1 when the pool's allocation is at or past its low-water mark",
            &low,
        )?;
        Ok(())
    }
}

/// The metrics over HTTP; dropping it stops the listener.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

/// The text of one scrape.
pub fn scrape(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

impl MetricsServer {
    /// Serves `collector` at `http://addr/metrics`.
    pub fn start(
        addr: SocketAddr,
        collector: DaemonCollector,
    ) -> Result<MetricsServer, ControlError> {
        let server = tiny_http::Server::http(addr).map_err(|e| ControlError::Metrics {
            addr,
            why: e.to_string(),
        })?;
        let addr = server.server_addr().to_ip().unwrap_or(addr);
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "metrics served on a non-loopback address: they name every device and dev_config");
        }
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let mut registry = Registry::default();
        registry.register_collector(Box::new(collector));
        let thread = {
            let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
            thread::Builder::new()
                .name("tcmud-metrics".into())
                .spawn(move || serve(&server, &stop, &registry))
                .map_err(|e| ControlError::Metrics {
                    addr,
                    why: e.to_string(),
                })?
        };
        tracing::info!(%addr, "metrics at http://{addr}/metrics");
        Ok(MetricsServer {
            server,
            stop,
            thread: Some(thread),
            addr,
        })
    }

    /// The address served (the port chosen when 0 was configured).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(server: &tiny_http::Server, stop: &AtomicBool, registry: &Registry) {
    while !stop.load(Ordering::SeqCst) {
        let req = match server.recv_timeout(Duration::from_secs(1)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: receive failed");
                continue;
            }
        };
        let response = if req.method() != &tiny_http::Method::Get {
            tiny_http::Response::from_string("only GET\n").with_status_code(405)
        } else if req.url() != "/metrics" {
            tiny_http::Response::from_string("not found: the metrics are at /metrics\n")
                .with_status_code(404)
        } else {
            match scrape(registry) {
                Ok(text) => {
                    let r = tiny_http::Response::from_string(text);
                    match tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"application/openmetrics-text; version=1.0.0; charset=utf-8"[..],
                    ) {
                        Ok(h) => r.with_header(h),
                        Err(()) => r,
                    }
                }
                Err(_) => {
                    tiny_http::Response::from_string("encoding failed\n").with_status_code(500)
                }
            }
        };
        if let Err(e) = req.respond(response) {
            tracing::debug!(error = %e, "metrics: response not sent");
        }
    }
}
