//! The controller: turns `<pending>` into IPs. [`plan`] decides what to write from the live
//! objects; the runner that watches the API and writes comes with it.

pub mod plan;
