//! fnc-eval: not yet implemented (see the project's open issues).
