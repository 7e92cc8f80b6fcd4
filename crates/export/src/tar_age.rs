//! tar.age: to come.
