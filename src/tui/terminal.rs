//! Terminal setup and restore on every exit path: normal quit, error (a
//! guard's Drop), panic (a hook), and SIGTERM / SIGHUP / SIGINT (flags the
//! event loop checks; a second signal exits at once).

use crossterm::{cursor, execute, terminal};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use std::io::{self, IsTerminal, Stdout};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;

pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Whether the terminal is in raw mode / the alternate screen because of us.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The thread that owns the terminal (the UI thread).
static UI_THREAD: OnceLock<ThreadId> = OnceLock::new();
/// The first panic message of another thread (the engine), reported after restore.
static OTHER_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Enters raw mode and the alternate screen, hides the cursor.
pub fn setup() -> io::Result<Term> {
    if !io::stdout().is_terminal() {
        return Err(io::Error::other(
            "the explorer needs a terminal (stdout is not a tty)",
        ));
    }
    let _ = UI_THREAD.set(std::thread::current().id());
    terminal::enable_raw_mode()?;
    ACTIVE.store(true, Ordering::SeqCst);
    let mut out = io::stdout();
    if let Err(e) = execute!(out, terminal::EnterAlternateScreen, cursor::Hide) {
        restore();
        return Err(e);
    }
    let t = Terminal::new(CrosstermBackend::new(out));
    if t.is_err() {
        restore();
    }
    t
}

/// Leaves the alternate screen, shows the cursor, leaves raw mode. Idempotent;
/// errors are ignored (after SIGHUP the terminal may be gone).
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let mut out = io::stdout();
        let _ = execute!(out, terminal::LeaveAlternateScreen, cursor::Show);
        let _ = terminal::disable_raw_mode();
    }
}

/// Whether the terminal is currently taken over.
pub fn is_active() -> bool {
    ACTIVE.load(Ordering::SeqCst)
}

/// Restores the terminal when dropped (error paths and unwinding).
pub struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

/// Installs (once) a panic hook that restores the terminal before the panic
/// message is printed. A panic in another thread (the engine) leaves the
/// terminal alone: its message is kept for [`other_panic`] and the UI ends
/// the session when it sees the engine gone.
pub fn install_panic_hook() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let me = std::thread::current().id();
            let ui = UI_THREAD.get().map(|t| *t == me).unwrap_or(true);
            if ui || !is_active() {
                restore();
                prev(info);
            } else if let Ok(mut slot) = OTHER_PANIC.lock() {
                slot.get_or_insert_with(|| info.to_string().replace('\n', " "));
            }
        }));
    });
}

/// The panic message of a non-UI thread, if one panicked.
pub fn other_panic() -> Option<String> {
    OTHER_PANIC.lock().ok().and_then(|s| s.clone())
}

/// SIGTERM, SIGHUP (the SSH connection dropped) and SIGINT, as flags.
pub struct Signals {
    which: Arc<AtomicUsize>,
}

impl Signals {
    pub fn register() -> io::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let which = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicBool::new(false));
        for sig in [SIGTERM, SIGHUP, SIGINT] {
            // A second signal while the first is being handled exits at once.
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, seen.clone())?;
            signal_hook::flag::register(sig, seen.clone())?;
            signal_hook::flag::register_usize(sig, which.clone(), sig as usize)?;
        }
        Ok(Signals { which })
    }

    /// The signal received, if any.
    pub fn pending(&self) -> Option<i32> {
        match self.which.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        }
    }
}
