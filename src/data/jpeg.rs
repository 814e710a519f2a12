//! JPEG decoding with the pixels PIL gives (`Image.open(p).convert("RGB")`,
//! what torchvision's `ImageFolder` loader does): libjpeg-turbo's algorithm
//! through `mozjpeg-sys` (ISLOW integer DCT, fancy upsampling), gray
//! replicated to RGB, CMYK/YCCK converted by PIL's `cmyk2rgb` on Adobe's
//! inverted values, EXIF orientation ignored (as PIL and torchvision do).
//! A file cut short is refused (PIL raises "image file is truncated");
//! libjpeg's fatal errors unwind out of the C code and become errors.
//! Measured identical to PIL 13 on JPEGs of every subsampling, gray, CMYK,
//! progressive and arithmetic-coded (tests/fixtures/make_jpeg.py).
//!
//! [`decode_window`] decodes only the rows and columns a caller needs (the
//! source region of torchvision's resize and center crop): the rows below
//! are never decoded, the rows above are skipped (`jpeg_skip_scanlines`)
//! and the columns outside are cropped (`jpeg_crop_scanline`) with a
//! margin, since libjpeg upsamples the pixels at a cropped edge as if at
//! the image's edge; only the wanted columns are kept. So every pixel
//! returned has the value of a whole decode (tested against whole decodes
//! in tests/imagenet.rs).

use super::resample::Window;
use mozjpeg_sys as ffi;

/// Whether `bytes` start like a JPEG (SOI and a marker).
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.len() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF
}

/// Part of a decoded image: interleaved RGB pixels of `window` of an image
/// of `width`x`height`.
#[derive(Debug)]
pub struct Decoded {
    pub width: usize,
    pub height: usize,
    pub window: Window,
    pub rgb: Vec<u8>,
}

/// Width and height from the header, without decoding pixels.
pub fn dimensions(bytes: &[u8]) -> Result<(usize, usize), String> {
    guarded(|| {
        let mut d = Decoder::open(bytes)?;
        Ok(d.size())
    })
}

/// Decodes to interleaved RGB (width, height, pixels); refuses images of
/// more than `max_pixels` before decoding them.
pub fn decode_rgb(bytes: &[u8], max_pixels: u64) -> Result<(usize, usize, Vec<u8>), String> {
    let d = decode_window(bytes, max_pixels, |w, h| Ok(Window::whole(w, h)))?;
    Ok((d.width, d.height, d.rgb))
}

/// Decodes the part of the image that `want(width, height)` asks for (at
/// least that window, perhaps more); refuses images of more than
/// `max_pixels` before decoding them.
pub fn decode_window(
    bytes: &[u8],
    max_pixels: u64,
    want: impl FnOnce(usize, usize) -> Result<Window, String>,
) -> Result<Decoded, String> {
    if !ends_its_scan(bytes) {
        return Err("image file is truncated (no end-of-image marker after its last scan)".into());
    }
    guarded(|| {
        let mut d = Decoder::open(bytes)?;
        let (w, h) = d.size();
        if w as u64 * h as u64 > max_pixels {
            return Err(format!(
                "{w}x{h} pixels is more than the {max_pixels} an image may have (PIL's decompression-bomb limit)"
            ));
        }
        let want = want(w, h)?;
        if want.w == 0 || want.h == 0 || !Window::whole(w, h).contains(&want) {
            return Err(format!("{want:?} is not a window of a {w}x{h} image"));
        }
        d.decode(want)
    })
}

/// The margin, in pixels, kept around a window so that the decoded pixels
/// of the window equal a whole decode's: fancy upsampling reads one
/// chroma sample either side (at most 2 pixels at 4:2:x); 16 is ample.
const MARGIN: usize = 16;

/// libjpeg's decompressor for one in-memory file, destroyed on drop (also
/// when an error unwinds).
struct Decoder<'a> {
    state: Box<State>,
    _bytes: std::marker::PhantomData<&'a [u8]>,
}

/// The decompressor and its error manager, boxed so that the pointer from
/// one to the other stays valid.
struct State {
    cinfo: ffi::jpeg_decompress_struct,
    err: ffi::jpeg_error_mgr,
}

impl Drop for Decoder<'_> {
    fn drop(&mut self) {
        // SAFETY: created in `open` (a zeroed struct, which destroy also
        // accepts, if creation itself failed).
        unsafe { ffi::jpeg_destroy_decompress(&mut self.state.cinfo) };
    }
}

impl<'a> Decoder<'a> {
    /// Reads the header of `bytes`.
    fn open(bytes: &'a [u8]) -> Result<Self, String> {
        // SAFETY: libjpeg's documented setup: an error manager with an
        // `error_exit` that unwinds (mozjpeg-sys is built with unwinding),
        // a memory source over `bytes`, which outlive the decoder.
        unsafe {
            let mut state: Box<State> = Box::new(std::mem::zeroed());
            ffi::jpeg_std_error(&mut state.err);
            state.err.error_exit = Some(error_exit);
            state.err.emit_message = Some(silence);
            state.cinfo.common.err = &mut state.err;
            let mut d = Decoder {
                state,
                _bytes: std::marker::PhantomData,
            };
            ffi::jpeg_create_decompress(&mut d.state.cinfo);
            ffi::jpeg_mem_src(&mut d.state.cinfo, bytes.as_ptr(), bytes.len() as _);
            if ffi::jpeg_read_header(&mut d.state.cinfo, 1) != 1 {
                return Err("no image in the JPEG stream".into());
            }
            Ok(d)
        }
    }

    fn size(&mut self) -> (usize, usize) {
        let c = &self.state.cinfo;
        (c.image_width as usize, c.image_height as usize)
    }

    /// Decodes at least `want` (inside the image), as RGB.
    fn decode(&mut self, want: Window) -> Result<Decoded, String> {
        use ffi::J_COLOR_SPACE::{JCS_CMYK, JCS_RGB, JCS_YCCK};
        let (w, h) = self.size();
        let c = &mut self.state.cinfo;
        let cmyk = matches!(c.jpeg_color_space, JCS_CMYK | JCS_YCCK);
        c.out_color_space = if cmyk { JCS_CMYK } else { JCS_RGB };
        c.dct_method = ffi::J_DCT_METHOD::JDCT_ISLOW;
        c.do_fancy_upsampling = 1;
        // SAFETY: the header was read; the calls follow libjpeg's order
        // (start, crop, skip, read); each row pointer points at a row of
        // `out`, sized to the output width and components.
        unsafe {
            ffi::jpeg_start_decompress(c);
            if c.output_width as usize != w || c.output_height as usize != h {
                return Err("libjpeg's output size is not the image's".into());
            }
            let comps = c.output_components as usize;
            if comps != if cmyk { 4 } else { 3 } {
                return Err(format!("{comps} output components"));
            }
            // Columns: libjpeg moves the start left to an iMCU boundary.
            let mut x0 = want.x.saturating_sub(MARGIN);
            let x1 = (want.x + want.w + MARGIN).min(w);
            if x0 > 0 || x1 < w {
                let mut xoff = x0 as ffi::JDIMENSION;
                let mut width = (x1 - x0) as ffi::JDIMENSION;
                ffi::jpeg_crop_scanline(c, &mut xoff, &mut width);
                x0 = xoff as usize;
                if x0 > want.x || x0 + width as usize != x1 || c.output_width != width {
                    return Err("libjpeg cropped other columns than asked".into());
                }
            }
            let ow = c.output_width as usize;
            // Rows: skip those above, stop after the last wanted.
            let y0 = want.y.saturating_sub(MARGIN);
            let y1 = (want.y + want.h + MARGIN).min(h);
            if y0 > 0 && ffi::jpeg_skip_scanlines(c, y0 as ffi::JDIMENSION) as usize != y0 {
                return Err("image file is truncated".into());
            }
            let stride = ow * comps;
            let mut out = vec![0u8; (y1 - y0) * stride];
            let mut done = 0;
            while done < y1 - y0 {
                let mut rows: Vec<*mut u8> = out[done * stride..]
                    .chunks_exact_mut(stride)
                    .take(16)
                    .map(|r| r.as_mut_ptr())
                    .collect();
                let n = ffi::jpeg_read_scanlines(c, rows.as_mut_ptr(), rows.len() as _) as usize;
                if n == 0 {
                    return Err("image file is truncated".into());
                }
                done += n;
            }
            // The columns near a cropped edge were upsampled as if at the
            // image's edge: only the wanted ones are kept.
            let (out, window) = if ow == w {
                (
                    out,
                    Window {
                        x: 0,
                        y: y0,
                        w,
                        h: y1 - y0,
                    },
                )
            } else {
                let (a, b) = ((want.x - x0) * comps, (want.x - x0 + want.w) * comps);
                let mut kept = Vec::with_capacity((y1 - y0) * (b - a));
                for r in out.chunks_exact(stride) {
                    kept.extend_from_slice(&r[a..b]);
                }
                (
                    kept,
                    Window {
                        x: want.x,
                        y: y0,
                        w: want.w,
                        h: y1 - y0,
                    },
                )
            };
            let rgb = if cmyk { cmyk_to_rgb(&out) } else { out };
            Ok(Decoded {
                width: w,
                height: h,
                window,
                rgb,
            })
        }
    }
}

/// PIL reads Adobe CMYK JPEGs inverted ("CMYK;I"), then `cmyk2rgb`.
fn cmyk_to_rgb(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() / 4 * 3);
    for px in raw.chunks_exact(4) {
        let nk = px[3] as i32;
        for &v in &px[..3] {
            let c = 255 - v as i32;
            let t = c * nk + 128;
            out.push((nk - (((t >> 8) + t) >> 8)).clamp(0, 255) as u8);
        }
    }
    out
}

/// libjpeg's fatal error: unwinds with its message (caught by [`guarded`]).
extern "C-unwind" fn error_exit(cinfo: &mut ffi::jpeg_common_struct) {
    let mut buf = [0u8; 80];
    // SAFETY: `err` is the manager set in `open`; libjpeg's
    // `format_message` writes at most 80 bytes (JMSG_LENGTH_MAX), which
    // mozjpeg-sys declares as a shared reference.
    let msg = unsafe {
        match (*cinfo.err).format_message {
            Some(f) => {
                let f: unsafe extern "C-unwind" fn(&mut ffi::jpeg_common_struct, &mut [u8; 80]) =
                    std::mem::transmute(f);
                f(cinfo, &mut buf);
                let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
                String::from_utf8_lossy(&buf[..end]).into_owned()
            }
            None => format!("code {}", (*cinfo.err).msg_code),
        }
    };
    std::panic::resume_unwind(Box::new(format!("libjpeg fatal error: {msg}")));
}

/// libjpeg's warnings (corrupt data it recovers from) are not printed.
extern "C-unwind" fn silence(_cinfo: &mut ffi::jpeg_common_struct, _level: std::os::raw::c_int) {}

/// Whether the stream has an end-of-image marker after its last start of
/// scan (libjpeg fills a file cut short with gray and only warns).
fn ends_its_scan(bytes: &[u8]) -> bool {
    let sos = bytes.windows(2).rposition(|m| m == [0xFF, 0xDA]);
    match sos {
        None => false,
        Some(s) => bytes[s..].windows(2).any(|m| m == [0xFF, 0xD9]),
    }
}

/// Runs a libjpeg call, turning its unwinding fatal errors into `Err`.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    crate::error::catch_quietly(f)
        .unwrap_or_else(|why| Err(format!("not a decodable JPEG ({why})")))
}
