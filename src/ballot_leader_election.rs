//! Ballot Leader Election.
