//! Logging: tracing-subscriber to stderr, text or JSON, with a reloadable filter.

use std::io::IsTerminal;

use crate::config::LogFormat;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// Why logging could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The filter directive does not parse.
    #[error("invalid log filter {0:?}: {1}")]
    Filter(String, String),
    /// A global subscriber is already installed.
    #[error("logging already initialised: {0}")]
    Init(String),
    /// The reload handle's subscriber is gone.
    #[error("cannot reload log filter: {0}")]
    Reload(String),
}

/// Changes the log filter of the running daemon (SIGHUP).
#[derive(Clone, Debug)]
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
    from_env: bool,
}

impl LogHandle {
    /// Replaces the filter, e.g. `debug` or `tcmud=trace,info`. A filter given
    /// through `RUST_LOG` at start-up stays in force.
    pub fn set_level(&self, level: &str) -> Result<(), LoggingError> {
        let f = parse_filter(level)?;
        if self.from_env {
            tracing::info!(level, "RUST_LOG is set; log filter not changed");
            return Ok(());
        }
        self.filter
            .reload(f)
            .map_err(|e| LoggingError::Reload(e.to_string()))
    }
}

fn parse_filter(level: &str) -> Result<EnvFilter, LoggingError> {
    EnvFilter::try_new(level).map_err(|e| LoggingError::Filter(level.to_owned(), e.to_string()))
}

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `level`.
pub fn init(level: &str, format: LogFormat) -> Result<LogHandle, LoggingError> {
    let (filter, from_env) = match std::env::var("RUST_LOG") {
        Ok(env) if !env.is_empty() => (parse_filter(&env)?, true),
        _ => (parse_filter(level)?, false),
    };
    let (filter_layer, handle) = reload::Layer::new(filter);
    // Colours only on a terminal: journald and log files get plain text.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(filter_layer)
        .with(fmt)
        .try_init()
        .map_err(|e| LoggingError::Init(e.to_string()))?;
    Ok(LogHandle {
        filter: handle,
        from_env,
    })
}
