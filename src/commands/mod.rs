pub mod bench;
pub mod prepare;
pub mod train;
