#![allow(dead_code)]
//! Shared test support: the application side and a scripted upstream.

pub mod accounts;
pub mod app;
pub mod scripted;
