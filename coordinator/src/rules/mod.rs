//! Pure decisions over plain data: who may do what ([`access`]), an A/B experiment's readout
//! ([`experiment`]), a release's stages and the
//! policies that gate them ([`lifecycle`]), the lineage graph ([`lineage`]) and what
//! retention and garbage collection let go ([`gc`]). Nothing here reads the store, the clock
//! or the network: the folders above gather the facts and carry out the outcome. The store
//! persists some of these types, which is why they sit below it.

pub mod access;
pub mod experiment;
pub mod gc;
pub mod lifecycle;
pub mod lineage;
