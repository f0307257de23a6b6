mod controller;
mod store;

fn main() {}
