//! Pure scoring logic: no I/O. Definitions in docs/segmentation.md.

pub mod bgnbd;
pub mod clusters;
pub mod evaluate;
pub mod fit;
pub mod gamma_gamma;
pub mod groups;
pub mod lifecycle;
pub mod predictions;
pub mod rfm;
pub mod rules;
pub mod rupture;
pub mod sample;
pub mod segments;
pub mod settings;
