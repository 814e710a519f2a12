//! JPEG decoding with the pixels PIL gives (`Image.open(p).convert("RGB")`,
//! what torchvision's `ImageFolder` loader does): libjpeg-turbo's algorithm
//! through the `mozjpeg` crate (ISLOW integer DCT, fancy upsampling), gray
//! replicated to RGB, CMYK/YCCK converted by PIL's `cmyk2rgb` on Adobe's
//! inverted values, EXIF orientation ignored (as PIL and torchvision do).
//! A file cut short is refused (PIL raises "image file is truncated");
//! libjpeg's fatal errors, which the crate raises as panics, become errors.
//! Measured identical to PIL 13 on JPEGs of every subsampling, gray, CMYK,
//! progressive and arithmetic-coded (tests/fixtures/make_jpeg.py).

use mozjpeg::{ColorSpace, DctMethod, Decompress};

/// Whether `bytes` start like a JPEG (SOI and a marker).
pub fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.len() >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF
}

/// Width and height from the header, without decoding pixels.
pub fn dimensions(bytes: &[u8]) -> Result<(usize, usize), String> {
    guarded(|| {
        let d = Decompress::new_mem(bytes).map_err(|e| e.to_string())?;
        Ok(d.size())
    })
}

/// Decodes to interleaved RGB (width, height, pixels); refuses images of
/// more than `max_pixels` before decoding them.
pub fn decode_rgb(bytes: &[u8], max_pixels: u64) -> Result<(usize, usize, Vec<u8>), String> {
    if !ends_its_scan(bytes) {
        return Err("image file is truncated (no end-of-image marker after its last scan)".into());
    }
    guarded(|| {
        let mut d = Decompress::new_mem(bytes).map_err(|e| e.to_string())?;
        let (w, h) = d.size();
        if w as u64 * h as u64 > max_pixels {
            return Err(format!(
                "{w}x{h} pixels is more than the {max_pixels} an image may have (PIL's decompression-bomb limit)"
            ));
        }
        d.dct_method(DctMethod::IntegerSlow);
        d.do_fancy_upsampling(true);
        let cmyk = matches!(d.color_space(), ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK);
        if cmyk {
            let mut s = d
                .to_colorspace(ColorSpace::JCS_CMYK)
                .map_err(|e| e.to_string())?;
            let raw: Vec<u8> = s.read_scanlines().map_err(|e| e.to_string())?;
            s.finish().map_err(|e| e.to_string())?;
            let mut out = Vec::with_capacity(w * h * 3);
            for px in raw.chunks_exact(4) {
                // PIL reads Adobe CMYK JPEGs inverted ("CMYK;I"), then cmyk2rgb.
                let nk = px[3] as i32;
                for &v in &px[..3] {
                    let c = 255 - v as i32;
                    let t = c * nk + 128;
                    out.push((nk - (((t >> 8) + t) >> 8)).clamp(0, 255) as u8);
                }
            }
            Ok((w, h, out))
        } else {
            let mut s = d.rgb().map_err(|e| e.to_string())?;
            let out: Vec<u8> = s.read_scanlines().map_err(|e| e.to_string())?;
            s.finish().map_err(|e| e.to_string())?;
            if out.len() != w * h * 3 {
                return Err("image file is truncated".into());
            }
            Ok((w, h, out))
        }
    })
}

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
