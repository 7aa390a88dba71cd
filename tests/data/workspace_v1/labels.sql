CREATE TABLE items (
	id INTEGER NOT NULL, 
	"key" VARCHAR(80) NOT NULL, 
	path TEXT NOT NULL, 
	size_bytes INTEGER NOT NULL, 
	width INTEGER NOT NULL, 
	height INTEGER NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	added_at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE UNIQUE INDEX ix_items_key ON items ("key");
CREATE TABLE quarantine (
	id INTEGER NOT NULL, 
	path TEXT NOT NULL, 
	"key" VARCHAR(80), 
	reason TEXT NOT NULL, 
	found_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (path)
);
CREATE TABLE rounds (
	id INTEGER NOT NULL, 
	started_at DATETIME NOT NULL, 
	finished_at DATETIME, 
	status VARCHAR(20) NOT NULL, 
	stats JSON NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE labels (
	id INTEGER NOT NULL, 
	item_id INTEGER NOT NULL, 
	label VARCHAR(200) NOT NULL, 
	source VARCHAR(10) NOT NULL, 
	who VARCHAR(200), 
	model_version VARCHAR(100), 
	confidence FLOAT, 
	round_id INTEGER, 
	created_at DATETIME NOT NULL, 
	superseded_at DATETIME, 
	extra JSON NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(item_id) REFERENCES items (id), 
	FOREIGN KEY(round_id) REFERENCES rounds (id)
);
CREATE INDEX ix_labels_superseded_at ON labels (superseded_at);
CREATE INDEX ix_labels_item_id ON labels (item_id);
CREATE TABLE tasks (
	id INTEGER NOT NULL, 
	project_id INTEGER NOT NULL, 
	item_id INTEGER NOT NULL, 
	task_id INTEGER NOT NULL, 
	round_id INTEGER, 
	model_version VARCHAR(100), 
	created_at DATETIME NOT NULL, 
	deleted BOOLEAN NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_task_project_item UNIQUE (project_id, item_id), 
	FOREIGN KEY(item_id) REFERENCES items (id), 
	FOREIGN KEY(round_id) REFERENCES rounds (id)
);
CREATE INDEX ix_tasks_task_id ON tasks (task_id);
CREATE INDEX ix_tasks_project_id ON tasks (project_id);
CREATE INDEX ix_tasks_item_id ON tasks (item_id);
CREATE TABLE selections (
	id INTEGER NOT NULL, 
	item_id INTEGER NOT NULL, 
	round_id INTEGER, 
	reason VARCHAR(10) NOT NULL, 
	holdout BOOLEAN NOT NULL, 
	machine_label VARCHAR(200), 
	machine_version VARCHAR(100), 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (item_id), 
	FOREIGN KEY(item_id) REFERENCES items (id), 
	FOREIGN KEY(round_id) REFERENCES rounds (id)
);
CREATE TABLE studio_task_sync (
	id INTEGER NOT NULL, 
	project_id INTEGER NOT NULL, 
	task_id INTEGER NOT NULL, 
	item_id INTEGER, 
	updated_at VARCHAR(40) NOT NULL, 
	annotation_ids TEXT NOT NULL, 
	outcome VARCHAR(20) NOT NULL, 
	label VARCHAR(200), 
	deleted BOOLEAN NOT NULL, 
	synced_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (task_id), 
	FOREIGN KEY(item_id) REFERENCES items (id)
);
CREATE INDEX ix_studio_task_sync_project_id ON studio_task_sync (project_id);
CREATE INDEX ix_studio_task_sync_item_id ON studio_task_sync (item_id);
CREATE TABLE studio_annotations (
	id INTEGER NOT NULL, 
	annotation_id INTEGER NOT NULL, 
	project_id INTEGER NOT NULL, 
	task_id INTEGER NOT NULL, 
	item_id INTEGER, 
	user_id INTEGER, 
	who VARCHAR(200), 
	choice VARCHAR(200), 
	was_cancelled BOOLEAN NOT NULL, 
	rejected TEXT, 
	lead_time FLOAT, 
	predicted VARCHAR(200), 
	prediction_version VARCHAR(100), 
	changed_prediction BOOLEAN, 
	created_at VARCHAR(40) NOT NULL, 
	updated_at VARCHAR(40) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (annotation_id), 
	FOREIGN KEY(item_id) REFERENCES items (id)
);
CREATE INDEX ix_studio_annotations_project_id ON studio_annotations (project_id);
CREATE INDEX ix_studio_annotations_task_id ON studio_annotations (task_id);
