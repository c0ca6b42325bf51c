//! The CloudTrail record layout as the parser sees it (AWS key names, in table column order) and
//! the column buffers that tape values are appended to.
//!
//! A [`StructLayout`] lists the JSON keys of one CloudTrail object (the record itself,
//! `userIdentity`, `sessionContext`, ...) in the order of the table's columns; the column named
//! `key.to_lowercase()` in `bunker_schemas::cloudtrail::schema()` is its column (a test checks this).
//! [`StructColumn`] mirrors a layout with one Arrow builder per leaf, and [`StructColumn::finish`]
//! assembles the arrays with the schema's own field definitions, so the batch's schema is the table's.
//!
//! Finishing a builder hands its buffers to the array, so every object starts from empty buffers.
//! Left to grow by doubling, they cost a tenth of the parse in reallocation and copies; instead
//! each column learns how much it holds per record ([`Sizing`]) and its buffers are sized once,
//! when the next object's record count is known ([`StructColumn::reserve`]).

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, ListArray, NullBufferBuilder, StringBuilder, StructArray,
    TimestampMicrosecondBuilder,
};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, FieldRef, Fields};
use arrow::error::ArrowError;

/// How a JSON value is stored in its column.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// Text: strings as is, other scalars as their JSON text, objects and arrays as compact JSON.
    Text,
    /// Free-form value kept as compact JSON text.
    Json,
    /// Boolean: `true`/`false`, or the strings `"true"`/`"false"`.
    Bool,
    /// RFC 3339 timestamp stored as UTC microseconds.
    Time,
    /// The record's event time, validated (and possibly taken from `@timestamp`) before the row starts.
    EventTime,
    /// A nested object with a known layout.
    Struct(&'static StructLayout),
    /// An array of objects with a known layout.
    List(&'static StructLayout),
}

/// One known key of a CloudTrail object.
#[derive(Debug)]
pub(super) struct FieldLayout {
    /// The key exactly as AWS writes it (matched case-sensitively).
    pub key: &'static str,
    /// How its value is stored.
    pub kind: Kind,
}

/// The known keys of one CloudTrail object, in table column order.
#[derive(Debug)]
pub(super) struct StructLayout {
    /// The keys.
    pub fields: &'static [FieldLayout],
}

impl StructLayout {
    /// Index of `key` among the fields, starting the search at `hint`.
    ///
    /// AWS writes the keys of a record in a nearly fixed order that is close to the column order, so
    /// starting where the previous key matched usually finds the next one at the first comparison.
    pub fn find(&self, key: &str, hint: usize) -> Option<usize> {
        let (ahead, from_hint) = self.fields.split_at(hint.min(self.fields.len()));
        let is_key = |field: &FieldLayout| field.key == key;
        from_hint.iter().position(is_key).map(|i| hint + i).or_else(|| ahead.iter().position(is_key))
    }
}

const fn f(key: &'static str, kind: Kind) -> FieldLayout {
    FieldLayout { key, kind }
}

/// `userIdentity.sessionContext.attributes`.
static SESSION_ATTRIBUTES: StructLayout =
    StructLayout { fields: &[f("mfaAuthenticated", Kind::Bool), f("creationDate", Kind::Time)] };

/// `userIdentity.sessionContext.sessionIssuer`.
static SESSION_ISSUER: StructLayout = StructLayout {
    fields: &[
        f("type", Kind::Text),
        f("principalId", Kind::Text),
        f("arn", Kind::Text),
        f("accountId", Kind::Text),
        f("userName", Kind::Text),
    ],
};

/// `userIdentity.sessionContext.webIdFederationData`.
static WEB_ID_FEDERATION: StructLayout =
    StructLayout { fields: &[f("federatedProvider", Kind::Text), f("attributes", Kind::Json)] };

/// `userIdentity.sessionContext`.
static SESSION_CONTEXT: StructLayout = StructLayout {
    fields: &[
        f("attributes", Kind::Struct(&SESSION_ATTRIBUTES)),
        f("sessionIssuer", Kind::Struct(&SESSION_ISSUER)),
        f("webIdFederationData", Kind::Struct(&WEB_ID_FEDERATION)),
        f("sourceIdentity", Kind::Text),
        f("ec2RoleDelivery", Kind::Text),
        f("assumedRoot", Kind::Text),
    ],
};

/// `userIdentity.onBehalfOf`.
static ON_BEHALF_OF: StructLayout =
    StructLayout { fields: &[f("userId", Kind::Text), f("identityStoreArn", Kind::Text)] };

/// `userIdentity`.
static USER_IDENTITY: StructLayout = StructLayout {
    fields: &[
        f("type", Kind::Text),
        f("principalId", Kind::Text),
        f("arn", Kind::Text),
        f("accountId", Kind::Text),
        f("invokedBy", Kind::Text),
        f("accessKeyId", Kind::Text),
        f("userName", Kind::Text),
        f("onBehalfOf", Kind::Struct(&ON_BEHALF_OF)),
        f("sessionContext", Kind::Struct(&SESSION_CONTEXT)),
        f("identityProvider", Kind::Text),
        f("credentialId", Kind::Text),
    ],
};

/// An item of `resources`. AWS spells the ARN key `ARN`.
static RESOURCE: StructLayout =
    StructLayout { fields: &[f("ARN", Kind::Text), f("accountId", Kind::Text), f("type", Kind::Text)] };

/// `addendum`.
static ADDENDUM: StructLayout = StructLayout {
    fields: &[
        f("reason", Kind::Text),
        f("updatedFields", Kind::Text),
        f("originalRequestID", Kind::Text),
        f("originalEventID", Kind::Text),
    ],
};

/// `tlsDetails`.
static TLS_DETAILS: StructLayout = StructLayout {
    fields: &[f("tlsVersion", Kind::Text), f("cipherSuite", Kind::Text), f("clientProvidedHostHeader", Kind::Text)],
};

/// A CloudTrail record: every column before `additionalfields`.
pub(super) static RECORD: StructLayout = StructLayout {
    fields: &[
        f("eventVersion", Kind::Text),
        f("userIdentity", Kind::Struct(&USER_IDENTITY)),
        f("eventTime", Kind::EventTime),
        f("eventSource", Kind::Text),
        f("eventName", Kind::Text),
        f("awsRegion", Kind::Text),
        f("sourceIPAddress", Kind::Text),
        f("userAgent", Kind::Text),
        f("errorCode", Kind::Text),
        f("errorMessage", Kind::Text),
        f("requestParameters", Kind::Json),
        f("responseElements", Kind::Json),
        f("additionalEventData", Kind::Json),
        f("requestID", Kind::Text),
        f("eventID", Kind::Text),
        f("readOnly", Kind::Bool),
        f("resources", Kind::List(&RESOURCE)),
        f("eventType", Kind::Text),
        f("apiVersion", Kind::Text),
        f("managementEvent", Kind::Bool),
        f("recipientAccountId", Kind::Text),
        f("serviceEventDetails", Kind::Json),
        f("sharedEventID", Kind::Text),
        f("vpcEndpointId", Kind::Text),
        f("vpcEndpointAccountId", Kind::Text),
        f("eventCategory", Kind::Text),
        f("addendum", Kind::Struct(&ADDENDUM)),
        f("sessionCredentialFromConsole", Kind::Bool),
        f("edgeDeviceDetails", Kind::Json),
        f("tlsDetails", Kind::Struct(&TLS_DETAILS)),
        f("insightDetails", Kind::Json),
    ],
};

/// The buffer of one column.
#[derive(Debug)]
pub(super) enum Column {
    /// Text and JSON-text columns.
    Text(StringBuilder),
    /// Boolean columns.
    Bool(BooleanBuilder),
    /// Timestamp columns (microseconds, UTC).
    Time(TimestampMicrosecondBuilder),
    /// Struct columns.
    Struct(Box<StructColumn>),
    /// List-of-struct columns.
    List(Box<ListColumn>),
}

/// What a column held per record of the objects parsed so far (a moving average), to size its
/// buffers for the next object.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Sizing {
    /// Values (rows of this column) per record.
    items: f32,
    /// Bytes of string data per record.
    bytes: f32,
}

impl Sizing {
    /// Slack on top of the average: most objects then fit without one doubling, and an array keeps
    /// at most this much unused capacity.
    const HEADROOM: f32 = 1.15;

    /// Takes in what an object of `records` records put in the column.
    pub fn learn(&mut self, records: usize, items: usize, bytes: usize) {
        if records == 0 {
            return;
        }
        let (items, bytes) = (items as f32 / records as f32, bytes as f32 / records as f32);
        if self.items == 0.0 && self.bytes == 0.0 {
            (self.items, self.bytes) = (items, bytes);
        } else {
            self.items += (items - self.items) / 4.0;
            self.bytes += (bytes - self.bytes) / 4.0;
        }
    }

    /// Values to make room for in an object of `records` records.
    pub fn items(&self, records: usize) -> usize {
        (self.items * records as f32 * Self::HEADROOM) as usize
    }

    /// String bytes to make room for in an object of `records` records.
    pub fn bytes(&self, records: usize) -> usize {
        (self.bytes * records as f32 * Self::HEADROOM) as usize
    }
}

impl Column {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Text | Kind::Json => Column::Text(StringBuilder::new()),
            Kind::Bool => Column::Bool(BooleanBuilder::new()),
            Kind::Time | Kind::EventTime => Column::Time(TimestampMicrosecondBuilder::new()),
            Kind::Struct(layout) => Column::Struct(Box::new(StructColumn::new(layout))),
            Kind::List(layout) => Column::List(Box::new(ListColumn::new(layout))),
        }
    }

    /// Appends a null (for a struct, a null struct whose children are null too).
    pub fn append_null(&mut self) {
        match self {
            Column::Text(b) => b.append_null(),
            Column::Bool(b) => b.append_null(),
            Column::Time(b) => b.append_null(),
            Column::Struct(s) => s.append_null(),
            Column::List(l) => l.append_null(),
        }
    }

    /// Values so far, and bytes of string data.
    fn size(&self) -> (usize, usize) {
        match self {
            Column::Text(b) => (b.len(), b.values_slice().len()),
            Column::Bool(b) => (b.len(), 0),
            Column::Time(b) => (b.len(), 0),
            Column::Struct(s) => (s.validity.len(), 0),
            Column::List(l) => (l.offsets.len() - 1, 0),
        }
    }

    /// Gives the (empty) buffers room for an object of `records` records, as `sizing` predicts.
    fn reserve(&mut self, sizing: Sizing, records: usize) {
        if self.size().0 > 0 {
            return;
        }
        let items = sizing.items(records);
        match self {
            Column::Text(b) => *b = StringBuilder::with_capacity(items, sizing.bytes(records)),
            Column::Bool(b) => *b = BooleanBuilder::with_capacity(items),
            Column::Time(b) => *b = TimestampMicrosecondBuilder::with_capacity(items),
            Column::Struct(s) => {
                s.validity = NullBufferBuilder::new(items);
                s.reserve(records);
            }
            Column::List(l) => {
                l.offsets.reserve(items);
                l.validity = NullBufferBuilder::new(items);
                l.items.reserve(records);
            }
        }
    }

    /// The finished array, typed as `data_type` (the schema's type for this column); resets the
    /// buffer. `records` is the object's record count, for the sizing of list items.
    fn finish(&mut self, data_type: &DataType, records: usize) -> Result<ArrayRef, ArrowError> {
        match (self, data_type) {
            (Column::Text(b), DataType::Utf8) => Ok(Arc::new(b.finish())),
            (Column::Bool(b), DataType::Boolean) => Ok(Arc::new(b.finish())),
            (Column::Time(b), DataType::Timestamp(_, tz)) => Ok(Arc::new(b.finish().with_timezone_opt(tz.clone()))),
            (Column::Struct(s), DataType::Struct(fields)) => Ok(Arc::new(s.finish(fields, records)?)),
            (Column::List(l), DataType::List(item)) => {
                let DataType::Struct(fields) = item.data_type() else {
                    return Err(layout_mismatch(item.data_type()));
                };
                let values = Arc::new(l.items.finish(fields, records)?);
                let offsets = std::mem::replace(&mut l.offsets, vec![0]);
                let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
                Ok(Arc::new(ListArray::try_new(item.clone(), offsets, values, l.validity.finish())?))
            }
            (_, other) => Err(layout_mismatch(other)),
        }
    }
}

fn layout_mismatch(data_type: &DataType) -> ArrowError {
    ArrowError::SchemaError(format!(
        "the CloudTrail parser's column layout does not match the table schema at a {data_type} column"
    ))
}

/// The buffers of a struct column (or of the record itself), one child per field of its layout.
#[derive(Debug)]
pub(super) struct StructColumn {
    /// The keys this struct knows.
    pub layout: &'static StructLayout,
    /// Which rows hold a struct (unused for the record itself).
    pub validity: NullBufferBuilder,
    /// One column per field of the layout, in the same order.
    pub children: Vec<Column>,
    /// Scratch for the row being appended: the tape index of each field's value, if present.
    pub slots: Vec<Option<usize>>,
    /// What each child holds per record, learnt object by object.
    sizing: Vec<Sizing>,
}

impl StructColumn {
    /// Empty buffers for `layout`.
    pub fn new(layout: &'static StructLayout) -> Self {
        StructColumn {
            layout,
            validity: NullBufferBuilder::new(0),
            children: layout.fields.iter().map(|f| Column::new(f.kind)).collect(),
            slots: vec![None; layout.fields.len()],
            sizing: vec![Sizing::default(); layout.fields.len()],
        }
    }

    /// Gives the children's (empty) buffers room for an object of `records` records.
    pub fn reserve(&mut self, records: usize) {
        for (child, sizing) in self.children.iter_mut().zip(&self.sizing) {
            child.reserve(*sizing, records);
        }
    }

    /// Forgets the rows appended so far, keeping what the sizing learnt.
    pub fn clear(&mut self) {
        *self = StructColumn { sizing: std::mem::take(&mut self.sizing), ..StructColumn::new(self.layout) };
    }

    /// Appends a null struct.
    pub fn append_null(&mut self) {
        self.validity.append_null();
        self.children.iter_mut().for_each(Column::append_null);
    }

    /// The children as arrays typed by `fields` (the schema's children of this struct), in order;
    /// `records` is how many records of the object they hold values of.
    pub fn finish_children(&mut self, fields: &[FieldRef], records: usize) -> Result<Vec<ArrayRef>, ArrowError> {
        if fields.len() != self.children.len() {
            return Err(ArrowError::SchemaError(format!(
                "the CloudTrail parser knows {} fields where the table schema has {}",
                self.children.len(),
                fields.len()
            )));
        }
        self.children
            .iter_mut()
            .zip(&mut self.sizing)
            .zip(fields.iter())
            .map(|((child, sizing), field)| {
                let (items, bytes) = child.size();
                sizing.learn(records, items, bytes);
                child.finish(field.data_type(), records)
            })
            .collect()
    }

    fn finish(&mut self, fields: &Fields, records: usize) -> Result<StructArray, ArrowError> {
        let children = self.finish_children(fields, records)?;
        StructArray::try_new(fields.clone(), children, self.validity.finish())
    }
}

/// The buffers of a list-of-struct column.
#[derive(Debug)]
pub(super) struct ListColumn {
    /// Arrow list offsets; always starts with 0.
    pub offsets: Vec<i32>,
    /// Which rows hold a list.
    pub validity: NullBufferBuilder,
    /// The items of every list, back to back.
    pub items: StructColumn,
}

impl ListColumn {
    fn new(layout: &'static StructLayout) -> Self {
        ListColumn { offsets: vec![0], validity: NullBufferBuilder::new(0), items: StructColumn::new(layout) }
    }

    /// Appends a null list.
    pub fn append_null(&mut self) {
        let end = self.offsets.last().copied().unwrap_or(0);
        self.offsets.push(end);
        self.validity.append_null();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizing_follows_what_objects_held_with_headroom() {
        let mut sizing = Sizing::default();
        assert_eq!((sizing.items(100), sizing.bytes(100)), (0, 0), "nothing learnt, nothing reserved");
        sizing.learn(0, 5, 50);
        assert_eq!(sizing.items(100), 0, "an object without records teaches nothing");
        // 100 records, 200 list items of 3000 bytes: 2 items and 30 bytes per record.
        sizing.learn(100, 200, 3000);
        assert_eq!((sizing.items(10), sizing.bytes(10)), (23, 345));
        // A quarter of the way towards each new object's shape.
        sizing.learn(100, 600, 3000);
        assert_eq!((sizing.items(100), sizing.bytes(100)), (345, 3450));
    }

    #[test]
    fn reserved_buffers_hold_a_whole_object_without_growing() {
        let mut column = Column::new(Kind::Text);
        let mut sizing = Sizing::default();
        sizing.learn(10, 10, 400);
        column.reserve(sizing, 1000);
        let Column::Text(builder) = &mut column else { unreachable!() };
        let (offsets, values) = (builder.offsets_capacity(), builder.values_capacity());
        assert!(offsets > 1000 && values >= 40_000, "{offsets} offsets, {values} bytes");
        for _ in 0..1000 {
            builder.append_value("x".repeat(40));
        }
        assert_eq!((builder.offsets_capacity(), builder.values_capacity()), (offsets, values));
        // A column that already holds rows is left as it is.
        column.reserve(sizing, 1_000_000);
        let Column::Text(builder) = &column else { unreachable!() };
        assert_eq!(builder.values_capacity(), values);
    }
}
