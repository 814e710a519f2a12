//! Terminal setup and restore on every exit path: normal quit, error (a
//! guard's Drop), panic (a hook), and SIGTERM / SIGHUP / SIGINT (flags the
//! event loop checks; a second signal exits at once).
//!
//! A terminal that disappears (the SSH connection or the tmux server gone)
//! leaves the tty hung up: readable forever, every read returning EOF or EIO.
//! crossterm 0.28's event source then re-reads in a loop that never returns,
//! whatever the poll timeout (crossterm issue #793), so the event loop waits
//! on the tty itself ([`wait`]) and hands it to crossterm only when it has
//! input; a hang-up ends the loop. [`watchdog`] ends the process should the
//! UI thread be stuck anyway.

use crossterm::{cursor, execute, terminal};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use std::fs::File;
use std::io::{self, IsTerminal, Read, Stdout, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::Duration;

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
        // Cleared first: tmux (3.3) moves what the alternate screen shows into
        // the main screen's scrollback when the window got wider meanwhile.
        let _ = execute!(
            out,
            terminal::Clear(terminal::ClearType::All),
            terminal::LeaveAlternateScreen,
            cursor::Show
        );
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
            if crate::error::panic_is_caught() {
                return; // a decoder's panic, turned into an error
            }
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

/// SIGTERM, SIGHUP (the SSH connection dropped) and SIGINT, as flags; each
/// also wakes [`wait`] through `wake`. SIGWINCH only wakes it and sets
/// [`Signals::resized`].
pub struct Signals {
    which: Arc<AtomicUsize>,
    resized: Arc<AtomicBool>,
}

impl Signals {
    pub fn register(wake: &Wake) -> io::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGWINCH};
        let which = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(AtomicBool::new(false));
        for sig in [SIGTERM, SIGHUP, SIGINT] {
            // A second signal while the first is being handled exits at once.
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, seen.clone())?;
            signal_hook::flag::register(sig, seen.clone())?;
            signal_hook::flag::register_usize(sig, which.clone(), sig as usize)?;
            // After the flags: the loop woken up sees the signal.
            signal_hook::low_level::pipe::register(sig, wake.sender()?)?;
        }
        let resized = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(SIGWINCH, resized.clone())?;
        signal_hook::low_level::pipe::register(SIGWINCH, wake.sender()?)?;
        Ok(Signals { which, resized })
    }

    /// The signal received, if any.
    pub fn pending(&self) -> Option<i32> {
        match self.which.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        }
    }

    /// Whether the window was resized since the last call.
    pub fn resized(&self) -> bool {
        self.resized.swap(false, Ordering::SeqCst)
    }
}

/// A self-pipe that wakes [`wait`]: written by the signal handlers and by
/// whoever forwards engine events.
pub struct Wake {
    rx: UnixStream,
    tx: UnixStream,
}

impl Wake {
    pub fn new() -> io::Result<Wake> {
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        Ok(Wake { rx, tx })
    }

    /// A handle that wakes the loop with [`wake`].
    pub fn sender(&self) -> io::Result<UnixStream> {
        self.tx.try_clone()
    }

    /// Empties the pipe (after [`wait`] returned).
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.rx).read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// Wakes the loop (a full pipe already does).
pub fn wake(tx: &UnixStream) {
    let _ = (&*tx).write(&[1]);
}

/// The terminal crossterm reads keys from: stdin when it is a tty, else
/// /dev/tty (crossterm's own choice).
pub struct Tty {
    fd: RawFd,
    _file: Option<File>,
}

impl Tty {
    pub fn open() -> io::Result<Tty> {
        if io::stdin().is_terminal() {
            return Ok(Tty {
                fd: io::stdin().as_raw_fd(),
                _file: None,
            });
        }
        let f = File::options().read(true).write(true).open("/dev/tty")?;
        Ok(Tty {
            fd: f.as_raw_fd(),
            _file: Some(f),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Whether the terminal has hung up (checked without waiting).
    pub fn gone(&self) -> bool {
        let mut fds = [sys::PollFd::new(self.fd, 0)];
        sys::poll(&mut fds, Some(Duration::ZERO)).is_ok_and(|n| n > 0 && fds[0].gone())
    }
}

/// What [`wait`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready {
    /// The terminal hung up (or its descriptor is no longer valid).
    Gone,
    /// `input`: keys are waiting; `woken`: a signal or an engine event, or
    /// neither (timeout, interrupted).
    Ready { input: bool, woken: bool },
}

/// Waits up to `timeout` for input on the terminal (when `for_input`; else
/// only for its hang-up) or a wake-up.
pub fn wait(tty: &Tty, wake: &Wake, timeout: Duration, for_input: bool) -> io::Result<Ready> {
    let events = if for_input { sys::POLLIN } else { 0 };
    let mut fds = [
        sys::PollFd::new(tty.fd, events),
        sys::PollFd::new(wake.rx.as_raw_fd(), sys::POLLIN),
    ];
    match sys::poll(&mut fds, Some(timeout)) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {
            return Ok(Ready::Ready {
                input: false,
                woken: true,
            })
        }
        Err(e) => return Err(e),
    }
    if fds[0].gone() {
        return Ok(Ready::Gone);
    }
    Ok(Ready::Ready {
        input: for_input && fds[0].revents() & sys::POLLIN != 0,
        woken: fds[1].revents() != 0,
    })
}

/// Starts a thread that ends the process `grace` after the terminal hung
/// up, in case the UI thread does not get to end it (it may be stuck in a
/// library call on the dead tty). Nothing can be restored on a gone
/// terminal; the exit status is that of SIGHUP.
pub fn watchdog(tty: &Tty, grace: Duration) {
    let fd = tty.fd;
    let _ = std::thread::Builder::new()
        .name("semcon-tty-watch".into())
        .spawn(move || loop {
            // No events asked: only a hang-up (or an error) ends the wait.
            let mut fds = [sys::PollFd::new(fd, 0)];
            match sys::poll(&mut fds, None) {
                Ok(n) if n > 0 && fds[0].gone() => {
                    std::thread::sleep(grace);
                    std::process::exit(128 + signal_hook::consts::SIGHUP);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        });
}

/// poll(2) through the `libc` crate, with the few pieces the loop needs.
mod sys {
    use std::ffi::{c_int, c_short};
    use std::io;
    use std::time::Duration;

    pub const POLLIN: c_short = libc::POLLIN;

    #[repr(transparent)]
    pub struct PollFd(libc::pollfd);

    impl PollFd {
        pub fn new(fd: c_int, events: c_short) -> PollFd {
            PollFd(libc::pollfd {
                fd,
                events,
                revents: 0,
            })
        }
        pub fn revents(&self) -> c_short {
            self.0.revents
        }
        /// Hung up, in error, or not a valid descriptor.
        pub fn gone(&self) -> bool {
            self.0.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0
        }
    }

    /// Number of descriptors with events; `None`: no timeout.
    pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
        let ms = match timeout {
            None => -1,
            // Rounded up, so that a short wait does not become a busy loop.
            Some(t) => t.as_micros().div_ceil(1000).min(c_int::MAX as u128) as c_int,
        };
        // SAFETY: `PollFd` is a transparent `pollfd`, so `fds` is a valid,
        // exclusively borrowed array of `pollfd` of the length passed.
        let n = unsafe {
            libc::poll(
                fds.as_mut_ptr().cast::<libc::pollfd>(),
                fds.len() as libc::nfds_t,
                ms,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}
