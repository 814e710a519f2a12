//! Pictures at the terminal's own resolution: which graphics protocol the
//! terminal speaks (kitty, sixel or iTerm2, through the `ratatui-image`
//! crate), found without ever hanging or leaving replies in the input, and
//! the sample panel's images encoded for it, cached by content and place.
//! Everywhere the answer is not a clear yes, pictures are half blocks
//! ([`super::image`]).
//!
//! The choice ([`choose`]): `SEMCON_GRAPHICS=kitty|sixel|iterm2|halfblocks`
//! forces one; otherwise half blocks under `NO_COLOR`, inside tmux or GNU
//! screen (they drop or mangle graphics unless configured for passthrough),
//! on `TERM=dumb`/`linux`; else the terminal is asked ([`query`]): kitty's
//! graphics query, the primary device attributes (sixel is attribute 4),
//! the cell size in pixels, then a status report every terminal answers,
//! read straight from the tty for at most [`QUERY_TIMEOUT`] before any key
//! is read. iTerm2 (and WezTerm) is recognised by its environment.

use super::image::HalfBlock;
use image::{imageops::FilterType, DynamicImage, RgbImage};
use ratatui::layout::Rect;
use ratatui::Frame;
use ratatui_image::picker::cap_parser::{Parser, QueryStdioOptions, Response};
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::Protocol;
use ratatui_image::{Image, Resize};
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// How long the terminal may take to answer the query.
pub const QUERY_TIMEOUT: Duration = Duration::from_millis(500);
/// After a timeout, how long late replies are still read and dropped
/// (then the tty's input queue is flushed), so that none reaches the keys.
pub const LATE_REPLIES: Duration = Duration::from_millis(1500);
/// Cell sizes believed, in pixels: (width, height) ranges; a reply outside
/// them is ignored (it would size pictures absurdly).
const CELL_W: std::ops::RangeInclusive<u16> = 2..=128;
const CELL_H: std::ops::RangeInclusive<u16> = 4..=256;

/// What the environment decides before anything is asked.
#[derive(Clone, Debug, PartialEq)]
pub enum Choice {
    /// Half blocks, and why.
    HalfBlocks(String),
    /// A protocol the user forced (or the environment names).
    Use(ProtocolType),
    /// Ask the terminal.
    Query,
}

/// The choice for an environment (`get` reads a variable).
pub fn choose(get: impl Fn(&str) -> Option<String>) -> Choice {
    let set = |k: &str| get(k).is_some_and(|v| !v.is_empty());
    match get("SEMCON_GRAPHICS")
        .as_deref()
        .map(str::to_ascii_lowercase)
    {
        Some(v) if v == "kitty" => return Choice::Use(ProtocolType::Kitty),
        Some(v) if v == "sixel" => return Choice::Use(ProtocolType::Sixel),
        Some(v) if v == "iterm2" => return Choice::Use(ProtocolType::Iterm2),
        Some(v) if ["halfblocks", "off", "none"].contains(&v.as_str()) => {
            return Choice::HalfBlocks("SEMCON_GRAPHICS".into())
        }
        Some(v) if v.is_empty() || v == "auto" => {}
        Some(v) => {
            return Choice::HalfBlocks(format!(
                "unknown SEMCON_GRAPHICS={v} (auto, kitty, sixel, iterm2, halfblocks)"
            ))
        }
        None => {}
    }
    if set("NO_COLOR") {
        return Choice::HalfBlocks("NO_COLOR".into());
    }
    let term = get("TERM").unwrap_or_default();
    if set("TMUX") || set("STY") || term.starts_with("tmux") || term.starts_with("screen") {
        return Choice::HalfBlocks("inside tmux/screen".into());
    }
    if term.is_empty() || term == "dumb" || term == "linux" {
        return Choice::HalfBlocks(format!("TERM={term}"));
    }
    let program = get("TERM_PROGRAM").unwrap_or_default();
    if program.contains("iTerm")
        || program.contains("WezTerm")
        || get("LC_TERMINAL").is_some_and(|v| v.contains("iTerm"))
    {
        return Choice::Use(ProtocolType::Iterm2);
    }
    Choice::Query
}

/// What the terminal said: its graphics protocol (kitty over sixel) and
/// its cell size in pixels, from the replies to the query.
pub fn interpret(replies: &[Response]) -> (Option<ProtocolType>, Option<(u16, u16)>) {
    let mut proto = None;
    let mut cell = None;
    for r in replies {
        match r {
            Response::Kitty => proto = Some(ProtocolType::Kitty),
            Response::Sixel if proto.is_none() => proto = Some(ProtocolType::Sixel),
            Response::CellSize(Some((w, h))) if CELL_W.contains(w) && CELL_H.contains(h) => {
                cell = Some((*w, *h))
            }
            _ => {}
        }
    }
    (proto, cell)
}

/// Feeds `bytes` to the reply parser; true once the closing status report
/// has arrived.
fn parse(parser: &mut Parser, bytes: &[u8], replies: &mut Vec<Response>) -> bool {
    for &b in bytes {
        for r in parser.push(char::from(b)) {
            if r == Response::Status {
                return true;
            }
            replies.push(r);
        }
    }
    false
}

/// Asks the terminal (raw mode, nothing reading keys yet): writes the query
/// to `out` and reads the replies from `input` until the status report or
/// `timeout`. `None`: no complete answer in time; the replies still on
/// their way are then read and dropped for up to [`LATE_REPLIES`] and the
/// input queue is flushed, so that none is taken for keys.
pub fn query(
    input: RawFd,
    out: &mut impl std::io::Write,
    timeout: Duration,
) -> Option<Vec<Response>> {
    let q = Parser::query(
        false,
        QueryStdioOptions {
            text_sizing_protocol: false,
        },
    );
    out.write_all(q.as_bytes()).ok()?;
    out.flush().ok()?;
    let mut parser = Parser::new();
    let mut replies = Vec::new();
    if read_replies(input, &mut parser, &mut replies, timeout) {
        return Some(replies);
    }
    read_replies(input, &mut parser, &mut Vec::new(), LATE_REPLIES);
    // SAFETY: discards unread input of the tty (a no-op on a pipe).
    unsafe { libc::tcflush(input, libc::TCIFLUSH) };
    None
}

/// Reads replies from `input` into `replies` until the status report
/// (true) or `timeout`, a hang-up or an error (false).
fn read_replies(
    input: RawFd,
    parser: &mut Parser,
    replies: &mut Vec<Response>,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut pfd = libc::pollfd {
            fd: input,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as libc::c_int) };
        if r < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        if r == 0 || pfd.revents & libc::POLLIN == 0 {
            if pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                return false;
            }
            continue;
        }
        // SAFETY: reads at most buf.len() bytes into buf.
        let n = unsafe { libc::read(input, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return false;
        }
        if parse(parser, &buf[..n as usize], replies) {
            return true;
        }
    }
}

/// The cell size in pixels the kernel knows for the tty `fd` (`None` where
/// the terminal does not tell it, as over many SSH connections, or tells
/// an implausible one).
fn winsize_cell(fd: RawFd) -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills a winsize.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } != 0 {
        return None;
    }
    if ws.ws_col == 0 || ws.ws_row == 0 || ws.ws_xpixel == 0 || ws.ws_ypixel == 0 {
        return None;
    }
    let cell = (ws.ws_xpixel / ws.ws_col, ws.ws_ypixel / ws.ws_row);
    (CELL_W.contains(&cell.0) && CELL_H.contains(&cell.1)).then_some(cell)
}

/// Decides how pictures are drawn on the terminal of `input`/`out` (raw
/// mode on, no key read yet): graphics, or half blocks with the reason.
pub fn detect(input: RawFd, out: &mut impl std::io::Write) -> Result<Graphics, String> {
    let env = |k: &str| std::env::var(k).ok();
    let (proto, cell) = match choose(env) {
        Choice::HalfBlocks(why) => return Err(why),
        Choice::Use(p) => (p, None),
        Choice::Query => match query(input, out, QUERY_TIMEOUT) {
            None => return Err("the terminal did not answer the graphics query".into()),
            Some(replies) => match interpret(&replies) {
                (Some(p), cell) => (p, cell),
                (None, _) => return Err("the terminal has no graphics protocol".into()),
            },
        },
    };
    let cell = cell.or_else(|| winsize_cell(input)).unwrap_or((10, 20));
    Ok(Graphics::new(proto, cell))
}

/// Pictures through a graphics protocol, each image encoded once per
/// content and place.
pub struct Graphics {
    picker: Picker,
    cache: RefCell<HashMap<u64, Protocol>>,
}

/// Encoded pictures kept at most (the sample panel shows a handful).
const CACHE: usize = 64;

impl Graphics {
    /// `proto` with cells of `cell` = (width, height) pixels.
    pub fn new(proto: ProtocolType, cell: (u16, u16)) -> Graphics {
        let cell = (
            cell.0.clamp(*CELL_W.start(), *CELL_W.end()),
            cell.1.clamp(*CELL_H.start(), *CELL_H.end()),
        );
        let mut picker = Picker::from_fontsize(cell);
        picker.set_protocol_type(proto);
        Graphics {
            picker,
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// The protocol's name, for the help screen.
    pub fn name(&self) -> &'static str {
        match self.picker.protocol_type() {
            ProtocolType::Kitty => "kitty graphics",
            ProtocolType::Sixel => "sixel",
            ProtocolType::Iterm2 => "iTerm2 images",
            ProtocolType::Halfblocks => "half blocks",
        }
    }

    /// The cells a `w` x `h` image fills in `area` at the largest scale
    /// that fits (aspect kept, centred), and its size in pixels there.
    pub fn fit(&self, w: usize, h: usize, area: Rect) -> (Rect, (u32, u32)) {
        let (fw, fh) = self.picker.font_size();
        let (fw, fh) = (fw.max(1) as f64, fh.max(1) as f64);
        let (aw, ah) = (area.width as f64 * fw, area.height as f64 * fh);
        let s = (aw / w.max(1) as f64).min(ah / h.max(1) as f64);
        let px = (
            ((w as f64 * s).floor() as u32).max(1),
            ((h as f64 * s).floor() as u32).max(1),
        );
        let cols = ((px.0 as f64 / fw).ceil() as u16).clamp(1, area.width.max(1));
        let rows = ((px.1 as f64 / fh).ceil() as u16).clamp(1, area.height.max(1));
        let r = Rect::new(
            area.x + (area.width.saturating_sub(cols)) / 2,
            area.y + (area.height.saturating_sub(rows)) / 2,
            cols,
            rows,
        );
        (r, px)
    }

    /// Draws a CHW image in [0,1] (1 or 3 channels) into `area`; an image
    /// the protocol cannot encode falls back to half blocks.
    pub fn render(&self, f: &mut Frame, img: &HalfBlock, area: Rect) {
        if area.width == 0 || area.height == 0 || img.width == 0 || img.height == 0 {
            return;
        }
        let (r, px) = self.fit(img.width, img.height, area);
        let key = {
            let mut s = std::collections::hash_map::DefaultHasher::new();
            (img.channels, img.height, img.width, r, px).hash(&mut s);
            for v in img.pixels {
                v.to_bits().hash(&mut s);
            }
            s.finish()
        };
        let mut cache = self.cache.borrow_mut();
        if !cache.contains_key(&key) {
            if cache.len() >= CACHE {
                cache.clear();
            }
            match self.encode(img, r, px) {
                Some(p) => {
                    cache.insert(key, p);
                }
                None => {
                    drop(cache);
                    f.render_widget(*img, area);
                    return;
                }
            }
        }
        if let Some(p) = cache.get(&key) {
            f.render_widget(Image::new(p), r);
        }
    }

    /// The image as RGB at `px` (nearest neighbour when enlarging, so
    /// pixels stay pixels; a triangle filter when shrinking), encoded.
    fn encode(&self, img: &HalfBlock, r: Rect, px: (u32, u32)) -> Option<Protocol> {
        let (w, h) = (img.width, img.height);
        let plane = w * h;
        let mut rgb = RgbImage::new(w as u32, h as u32);
        for y in 0..h {
            for x in 0..w {
                let v = |c: usize| {
                    let c = if img.channels >= 3 { c } else { 0 };
                    let v = img
                        .pixels
                        .get(c * plane + y * w + x)
                        .copied()
                        .unwrap_or(0.0);
                    (v.clamp(0.0, 1.0) * 255.0).round() as u8
                };
                rgb.put_pixel(x as u32, y as u32, image::Rgb([v(0), v(1), v(2)]));
            }
        }
        let filter = if px.0 as usize >= w {
            FilterType::Nearest
        } else {
            FilterType::Triangle
        };
        let sized = image::imageops::resize(&rgb, px.0, px.1, filter);
        self.picker
            .new_protocol(DynamicImage::ImageRgb8(sized), r, Resize::Fit(None))
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn multiplexers_and_plain_terminals_get_half_blocks_without_a_query() {
        let tmux = choose(env(&[("TERM", "xterm-256color"), ("TMUX", "/tmp/t,1,0")]));
        assert!(matches!(tmux, Choice::HalfBlocks(_)), "{tmux:?}");
        for term in ["tmux-256color", "screen-256color", "dumb", "linux", ""] {
            let c = choose(env(&[("TERM", term)]));
            assert!(matches!(c, Choice::HalfBlocks(_)), "{term}: {c:?}");
        }
        let c = choose(env(&[("TERM", "xterm-kitty"), ("NO_COLOR", "1")]));
        assert_eq!(c, Choice::HalfBlocks("NO_COLOR".into()));
        assert_eq!(choose(env(&[("TERM", "xterm-kitty")])), Choice::Query);
        assert_eq!(
            choose(env(&[
                ("TERM", "xterm-256color"),
                ("TERM_PROGRAM", "WezTerm")
            ])),
            Choice::Use(ProtocolType::Iterm2)
        );
    }

    #[test]
    fn the_variable_forces_a_protocol_or_half_blocks() {
        let inside_tmux = [("TERM", "tmux-256color"), ("TMUX", "x")];
        for (v, want) in [
            ("kitty", ProtocolType::Kitty),
            ("SIXEL", ProtocolType::Sixel),
            ("iterm2", ProtocolType::Iterm2),
        ] {
            let mut e = inside_tmux.to_vec();
            e.push(("SEMCON_GRAPHICS", v));
            assert_eq!(choose(env(&e)), Choice::Use(want));
        }
        let c = choose(env(&[
            ("TERM", "xterm-kitty"),
            ("SEMCON_GRAPHICS", "halfblocks"),
        ]));
        assert!(matches!(c, Choice::HalfBlocks(_)));
        let c = choose(env(&[("TERM", "xterm-kitty"), ("SEMCON_GRAPHICS", "png")]));
        assert!(
            matches!(c, Choice::HalfBlocks(ref why) if why.contains("png")),
            "{c:?}"
        );
        let c = choose(env(&[("TERM", "xterm-kitty"), ("SEMCON_GRAPHICS", "auto")]));
        assert_eq!(c, Choice::Query);
    }

    /// The query's replies as kitty, a sixel terminal (xterm -ti vt340) and
    /// a plain xterm send them.
    #[test]
    fn implausible_cell_sizes_are_ignored() {
        let cell = |w, h| interpret(&[Response::Kitty, Response::CellSize(Some((w, h)))]).1;
        assert_eq!(cell(10, 20), Some((10, 20)));
        assert_eq!(cell(60000, 60000), None);
        assert_eq!(cell(0, 20), None);
        // forced sizes are clamped
        let g = Graphics::new(ProtocolType::Kitty, (60000, 0));
        assert_eq!(g.picker.font_size(), (128, 4));
    }

    #[test]
    fn replies_are_read_until_the_status_report() {
        let run = |bytes: &[u8]| {
            let mut p = Parser::new();
            let mut replies = Vec::new();
            let done = parse(&mut p, bytes, &mut replies);
            (done, interpret(&replies))
        };
        let kitty = b"\x1b_Gi=31;OK\x1b\\\x1b[6;20;10t\x1b[?62;c\x1b[0n";
        assert_eq!(
            run(kitty),
            (true, (Some(ProtocolType::Kitty), Some((10, 20))))
        );
        let sixel = b"\x1b[?63;1;2;4;6;9;15;16;22;28c\x1b[6;16;8t\x1b[0n";
        assert_eq!(
            run(sixel),
            (true, (Some(ProtocolType::Sixel), Some((8, 16))))
        );
        let plain = b"\x1b[?1;2c\x1b[0n";
        assert_eq!(run(plain), (true, (None, None)));
        // cut off before the status report: not done
        assert!(!run(&kitty[..12]).0);
    }

    /// A terminal that never answers: the query gives up at its timeout (and
    /// after the grace for late replies).
    #[test]
    fn a_silent_terminal_times_out() {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: a pipe whose write end stays open and silent.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let t = Instant::now();
        let mut sink = Vec::new();
        let r = query(fds[0], &mut sink, Duration::from_millis(150));
        let took = t.elapsed();
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        assert!(r.is_none());
        // the timeout, then late replies are waited for and dropped
        assert!(
            took >= Duration::from_millis(140) + LATE_REPLIES,
            "{took:?}"
        );
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert!(sink.starts_with(b"\x1b_G"), "the kitty query goes first");
    }

    /// A terminal that answers through the tty: the replies are read.
    #[test]
    fn an_answering_terminal_is_heard() {
        let mut fds = [0 as libc::c_int; 2];
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let reply = b"\x1b[?62;4c\x1b[6;18;9t\x1b[0n";
        let n = unsafe { libc::write(fds[1], reply.as_ptr().cast(), reply.len()) };
        assert_eq!(n as usize, reply.len());
        let r = query(fds[0], &mut Vec::new(), Duration::from_secs(2));
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        let r = r.expect("answered");
        assert_eq!(interpret(&r), (Some(ProtocolType::Sixel), Some((9, 18))));
    }

    /// Drawn through kitty's protocol, the picture is one transmission in
    /// its first cell and a row of unicode placeholders per row (centred, the
    /// aspect kept); through sixel, the sixel data in its first cell.
    #[test]
    fn pictures_are_encoded_for_the_protocol() {
        use ratatui::backend::TestBackend;
        use ratatui::Terminal;
        let px: Vec<f32> = (0..3 * 28 * 14).map(|i| (i % 7) as f32 / 6.0).collect();
        let img = HalfBlock {
            pixels: &px,
            channels: 3,
            height: 14,
            width: 28,
            mode: super::super::image::ColorMode::TrueColor,
        };
        let g = Graphics::new(ProtocolType::Kitty, (10, 20));
        let area = Rect::new(0, 0, 40, 12);
        // 28x14 px into 400x240 px: scale 14.28 -> 400x200 px = 40x10 cells
        let (r, size) = g.fit(28, 14, area);
        assert_eq!((r, size), (Rect::new(0, 1, 40, 10), (400, 200)));
        let mut t = Terminal::new(TestBackend::new(40, 12)).unwrap();
        t.draw(|f| g.render(f, &img, area)).unwrap();
        let buf = t.backend().buffer();
        assert!(
            buf[(0, 1)].symbol().starts_with("\x1b_G"),
            "{:?}",
            &buf[(0, 1)].symbol()[..20]
        );
        // each row's placeholders sit in its first cell; the others are skipped
        assert!(buf[(0, 5)].symbol().contains('\u{10EEEE}'), "placeholders");
        assert_eq!(
            buf[(5, 5)].symbol(),
            " ",
            "skipped: the row's placeholders cover it"
        );
        assert_eq!(buf[(5, 0)].symbol(), " ", "above the picture: nothing");
        // drawn again, it is not encoded again (one cached protocol)
        t.draw(|f| g.render(f, &img, area)).unwrap();
        assert_eq!(g.cache.borrow().len(), 1);
        let g = Graphics::new(ProtocolType::Sixel, (10, 20));
        let mut t = Terminal::new(TestBackend::new(40, 12)).unwrap();
        t.draw(|f| g.render(f, &img, area)).unwrap();
        assert!(t.backend().buffer()[(0, 1)].symbol().starts_with("\x1bP"));
    }
}
