//! A small `.npz` / `.npy` reader (datasets, `--input`, `--labels`, k*
//! features): the zip members may be stored
//! (`np.savez`) or deflate-compressed (`np.savez_compressed`), which candle's
//! reader does not support; dtypes bool, (u)int8..64, float16/32/64 in either
//! byte order, C or Fortran order. Integers come back as I64 (uint8/bool as
//! U8), floats as F32 (float64 as F64).
//! Writing: `write.rs` (`np.save`/`np.savez` byte for byte, atomic output files).

mod read;
mod write;

pub use read::{is_integer, parse_npy, parse_npy_strings, read_npy_file, Npz};
pub use write::{encode_npy, save_npy, save_npz, write_npz, NpyArray};
