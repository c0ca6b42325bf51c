//! A real S3/SQS/KMS endpoint for the tests: `moto_server` (PyPI `moto[server]`) on a free loopback
//! port, one per test, stopped when the test ends. The AWS SDK clients here and the `bunker`
//! processes under test talk to it exactly as they would to AWS, through `AWS_ENDPOINT_URL`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::QueueAttributeName;

pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY: &str = "AKIDBUNKERTEST000001";
pub const SECRET_KEY: &str = "bunker-test-secret-key-not-a-real-one";

/// A running `moto_server`.
pub struct Moto {
    child: Child,
    pub endpoint: String,
    /// The SDK configuration the clients below are built from (endpoint, region, test credentials).
    pub config: aws_config::SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub kms: aws_sdk_kms::Client,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// The `moto_server` executable: `program` if given, else `$MOTO_SERVER`, else on `PATH`.
fn moto_command(program: Option<&str>) -> Command {
    let program = match program {
        Some(program) => program.to_owned(),
        None => std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into()),
    };
    let found = Command::new(&program).arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !matches!(found, Ok(status) if status.success()) {
        panic!(
            "moto_server is not installed (looked for {program:?}). The worker tests need a real S3/SQS/KMS \
             endpoint: install it with `python3 -m pip install 'moto[server]'` (scripts/test.sh does this), \
             or point MOTO_SERVER at the executable."
        );
    }
    Command::new(program)
}

impl Moto {
    pub async fn start() -> Moto {
        Moto::start_program(None).await
    }

    /// Starts `program` (a `moto_server` executable) instead of the default one.
    pub async fn start_program(program: Option<&str>) -> Moto {
        let port = free_port();
        let child = moto_command(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start listening on {address} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let endpoint = format!("http://{address}");
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
            .load()
            .await;
        let s3_config = aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build();
        Moto {
            child,
            endpoint,
            s3: aws_sdk_s3::Client::from_conf(s3_config),
            sqs: aws_sdk_sqs::Client::new(&config),
            kms: aws_sdk_kms::Client::new(&config),
            config,
        }
    }

    /// The environment a `bunker` process needs to reach this endpoint.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }

    /// A bucket for the lake.
    pub async fn create_bucket(&self, name: &str) {
        self.s3.create_bucket().bucket(name).send().await.expect("create bucket");
    }

    /// The archive bucket as a log-archive account has it: Object Lock on, SSE-KMS by default with
    /// a customer key, and `ObjectCreated` notifications to a queue. Returns the queue URL.
    pub async fn create_archive(&self, bucket: &str, queue: &str) -> String {
        let key = self.kms.create_key().description("log archive").send().await.expect("create KMS key");
        let key_id = key.key_metadata().expect("key metadata").key_id().to_owned();
        self.s3.create_bucket().bucket(bucket).object_lock_enabled_for_bucket(true).send().await.expect("bucket");
        use aws_sdk_s3::types::*;
        let sse = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::AwsKms)
            .kms_master_key_id(&key_id)
            .build()
            .expect("sse");
        let rule = ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(sse).build();
        let encryption = ServerSideEncryptionConfiguration::builder().rules(rule).build().expect("encryption");
        self.s3
            .put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(encryption)
            .send()
            .await
            .expect("bucket encryption");
        let retention = DefaultRetention::builder().mode(ObjectLockRetentionMode::Governance).days(1).build();
        let lock = ObjectLockConfiguration::builder()
            .object_lock_enabled(ObjectLockEnabled::Enabled)
            .rule(ObjectLockRule::builder().default_retention(retention).build())
            .build();
        self.s3
            .put_object_lock_configuration()
            .bucket(bucket)
            .object_lock_configuration(lock)
            .send()
            .await
            .expect("object lock");
        let queue_url = self.create_queue(queue).await;
        let arn = self.queue_arn(&queue_url).await;
        let to_queue =
            QueueConfiguration::builder().queue_arn(arn).events(Event::S3ObjectCreated).build().expect("queue config");
        let notification = NotificationConfiguration::builder().queue_configurations(to_queue).build();
        self.s3
            .put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(notification)
            .send()
            .await
            .expect("bucket notification");
        queue_url
    }

    pub async fn create_queue(&self, name: &str) -> String {
        let out = self.sqs.create_queue().queue_name(name).send().await.expect("create queue");
        out.queue_url().expect("queue url").to_owned()
    }

    async fn queue_arn(&self, queue_url: &str) -> String {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes");
        out.attributes().and_then(|a| a.get(&QueueAttributeName::QueueArn)).expect("queue arn").clone()
    }

    /// Messages on the queue, visible and in flight.
    pub async fn queue_depth(&self, queue_url: &str) -> u64 {
        // `All`, not the two names: moto 5 builds every attribute once per name asked for, and
        // each build walks the whole queue (six walks instead of one, with a backlog in it).
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .expect("queue attributes");
        let attributes = out.attributes().cloned().unwrap_or_default();
        let get = |name| attributes.get(&name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        get(QueueAttributeName::ApproximateNumberOfMessages)
            + get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
    }

    /// Uploads every file under `dir` to `bucket` with its relative path as the key, eight at a time.
    pub async fn upload_dir(&self, dir: &Path, bucket: &str) -> u64 {
        let files = walkdir(dir);
        let count = files.len() as u64;
        for chunk in files.chunks(8) {
            let mut puts = tokio::task::JoinSet::new();
            for file in chunk {
                let key = file.strip_prefix(dir).expect("under dir").to_str().expect("utf-8").replace('\\', "/");
                let body = std::fs::read(file).expect("read file");
                let (s3, bucket) = (self.s3.clone(), bucket.to_owned());
                puts.spawn(async move { put(&s3, &bucket, &key, body).await });
            }
            while let Some(done) = puts.join_next().await {
                done.expect("upload task");
            }
        }
        count
    }

    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) {
        put(&self.s3, bucket, key, body).await;
    }

    pub async fn send(&self, queue_url: &str, body: &str) {
        self.sqs.send_message().queue_url(queue_url).message_body(body).send().await.expect("send message");
    }

    /// Bodies of every message on a queue, received (and deleted) until it stays empty.
    pub async fn receive_all(&self, queue_url: &str) -> Vec<String> {
        let mut bodies = Vec::new();
        let mut empty_polls = 0;
        while empty_polls < 2 {
            let out = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive");
            let messages = out.messages();
            if messages.is_empty() {
                empty_polls += 1;
                continue;
            }
            for message in messages {
                bodies.extend(message.body().map(str::to_owned));
                if let Some(receipt) = message.receipt_handle() {
                    self.sqs
                        .delete_message()
                        .queue_url(queue_url)
                        .receipt_handle(receipt)
                        .send()
                        .await
                        .expect("delete");
                }
            }
        }
        bodies
    }

    /// Keys in a bucket.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self.s3.list_objects_v2().bucket(bucket).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.expect("list");
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        }
        keys
    }
}

async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: Vec<u8>) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)));
}

/// Every file under `dir`, sorted.
pub fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}
