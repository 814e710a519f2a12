//! Typed library errors. Every error that reaches the user is one clear line
//! naming the file, tensor or value at fault; the CLI adds context with anyhow.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its content is not what its format promises.
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    /// A checkpoint does not fit the architecture semcon built from it.
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    /// A value given by the user (flag, label, level) is out of range.
    #[error("{0}")]
    Invalid(String),
    /// Writing an output file failed (nothing was left behind).
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: Box<Error>,
    },
    #[error(transparent)]
    Candle(candle_core::Error),
}

impl From<candle_core::Error> for Error {
    /// Drops candle's captured backtrace: users get one line.
    fn from(e: candle_core::Error) -> Self {
        match e {
            candle_core::Error::WithBacktrace { inner, .. } => Error::Candle(*inner),
            e => Error::Candle(e),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

/// `bail!`-like shorthand for [`Error::Invalid`].
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => { $crate::error::Error::Invalid(format!($($arg)*)) };
}

/// One line for the user: the chain of an error's contexts joined with ": "
/// (a context already contained in an earlier one is left out).
pub fn format_error(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        // First line only: candle appends captured backtraces after a newline.
        let s = c
            .to_string()
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

thread_local! {
    static CAUGHT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the current thread is inside [`catch_quietly`] (panic hooks stay
/// silent then: the panic becomes an error, not a crash).
pub fn panic_is_caught() -> bool {
    CAUGHT.with(|c| c.get())
}

/// Runs `f`, turning a panic inside it into `Err(message)` without the panic
/// hook printing it: for third-party decoders that panic on hostile input
/// (found by fuzzing: the `png` crate on a malformed palette).
pub fn catch_quietly<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    static HOOK: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    HOOK.get_or_init(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !panic_is_caught() {
                prev(info);
            }
        }));
    });
    let was = CAUGHT.with(|c| c.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CAUGHT.with(|c| c.set(was));
    r.map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown failure".into());
        msg.chars().take(160).collect()
    })
}
