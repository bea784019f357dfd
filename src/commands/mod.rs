pub mod bench;
pub mod bench_agent;
pub mod doctor;
pub mod prepare;
pub mod propose;
pub mod report;
pub mod run;
pub mod train;
