#![no_main]

use std::sync::LazyLock;

use guichet::policy::model::Field;

static FIELDS: LazyLock<Vec<Field>> = LazyLock::new(guichet::fuzzing::form_fields);

libfuzzer_sys::fuzz_target!(|data: &[u8]| guichet::fuzzing::pairs(data, &FIELDS));
