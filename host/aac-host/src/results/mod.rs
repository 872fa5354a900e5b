//! Bundles in, results out: packing a directory into a bundle for `runs create --bundle`, and
//! capturing what a command changed in the workspace as its result.

pub mod capture;
pub mod pack;
pub mod restore;
pub mod turn;
