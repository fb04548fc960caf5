//! JPEG decoding, and the CPU paths of the SIMD kernels ([`cpu`]), shared by
//! ingest (which decodes what it stores raw, resizes or re-encodes) and the
//! augmentation engine (which decodes kept JPEGs for every view), so that both
//! turn a JPEG into the same pixels.
//!
//! [`decode_jpeg`] takes nearly every photo through a baseline decoder of our
//! own (`jpeg`: libjpeg-turbo's pixels, about 1.8x zune-jpeg's speed) and
//! leaves the rest (progressive, CMYK, odd sampling, damaged files) to
//! zune-jpeg.
// `unsafe` lives only in the dispatch of `cpu` and the intrinsics of
// `jpeg::idct_avx2`, each block with a SAFETY note.
#![deny(unsafe_code)]

pub mod cpu;
mod decode;
mod jpeg;

pub use decode::decode_jpeg;
