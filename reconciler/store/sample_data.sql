-- The seed's sample rows (Steps 8-13), verbatim, for `reconcile state load-sample`.

INSERT INTO sync_platforms (id, platform_code, platform_name, platform_type, api_endpoint, auth_type, supported_formats, max_file_size_mb, rate_limit_per_hour, sync_enabled, health_status) VALUES
(1, 'CDN-PRIMARY', 'Primary CDN', 'cdn', 'https://cdn.example.com/api/v1', 'api_key', 'image/jpeg,image/png,video/mp4', 5000, 1000, TRUE, 'healthy'),
(2, 'YOUTUBE', 'YouTube Channel', 'video_platform', 'https://www.googleapis.com/youtube/v3', 'oauth2', 'video/mp4,video/mov', 128000, 50, TRUE, 'healthy'),
(3, 'VIMEO', 'Vimeo Account', 'video_platform', 'https://api.vimeo.com', 'oauth2', 'video/mp4,video/mov,video/avi', 25000, 100, TRUE, 'healthy'),
(4, 'S3-BACKUP', 'AWS S3 Backup', 'cloud_storage', 'https://s3.amazonaws.com', 'aws_signature', 'all', 50000, 5000, TRUE, 'healthy'),
(5, 'SOCIAL-MEDIA', 'Social Media Hub', 'social', 'https://api.socialhub.com/v2', 'oauth2', 'image/jpeg,image/png,video/mp4', 500, 200, TRUE, 'healthy'),
(6, 'DAM-EXTERNAL', 'External DAM', 'dam', 'https://dam.partner.com/api', 'api_key', 'all', 10000, 500, TRUE, 'degraded');

INSERT INTO source_assets (id, asset_code, title, description, asset_type, category, file_path, file_size_mb, checksum, version, status, created_at) VALUES
(1, 'VID-LAUNCH-2024', 'Product Launch 2024', 'Annual product launch keynote video', 'video', 'corporate', '/media/videos/launch_2024.mp4', 2850.5, 'abc123def456', 3, 'active', '2024-01-15 10:00:00'),
(2, 'VID-TUTORIAL-01', 'Getting Started Tutorial', 'Platform onboarding tutorial', 'video', 'education', '/media/videos/tutorial_01.mp4', 580.2, 'def456ghi789', 2, 'active', '2024-01-10 09:00:00'),
(3, 'IMG-HERO-PROD', 'Product Hero Image', 'Main product marketing image', 'image', 'marketing', '/media/images/hero_product.jpg', 15.2, 'ghi789jkl012', 1, 'active', '2024-01-12 14:00:00'),
(4, 'VID-TESTIMONIAL', 'Customer Testimonial', 'Customer success story video', 'video', 'marketing', '/media/videos/testimonial.mp4', 420.8, 'jkl012mno345', 1, 'active', '2024-01-18 11:00:00'),
(5, 'IMG-TEAM-2024', 'Team Photo 2024', 'Annual company team photo', 'image', 'corporate', '/media/images/team_2024.jpg', 8.5, 'mno345pqr678', 1, 'active', '2024-01-20 15:00:00');

INSERT INTO sync_configurations (id, config_code, config_name, source_category, asset_types, platform_id, sync_mode, transform_rules, schedule_cron, auto_sync, priority, is_active) VALUES
(1, 'SYNC-CDN-ALL', 'CDN Full Sync', 'all', 'image,video', 1, 'full', '{"resize_images": true, "max_dimension": 2000}', '0 */6 * * *', TRUE, 10, TRUE),
(2, 'SYNC-YT-VIDEO', 'YouTube Video Sync', 'corporate,marketing', 'video', 2, 'selective', '{"add_watermark": true, "quality": "1080p"}', '0 9 * * 1', TRUE, 8, TRUE),
(3, 'SYNC-VIMEO-EDU', 'Vimeo Education', 'education', 'video', 3, 'selective', '{"quality": "1080p"}', '0 10 * * *', TRUE, 7, TRUE),
(4, 'SYNC-S3-BACKUP', 'S3 Backup All', 'all', 'all', 4, 'full', '{"encrypt": true}', '0 2 * * *', TRUE, 5, TRUE),
(5, 'SYNC-SOCIAL', 'Social Media Sync', 'marketing', 'image,video', 5, 'selective', '{"optimize_for_social": true}', '0 8 * * *', TRUE, 6, TRUE);

INSERT INTO sync_jobs (id, job_code, config_id, asset_id, platform_id, job_type, status, progress_percent, source_version, started_at, completed_at, created_at) VALUES
(1, 'SYNC-001', 1, 1, 1, 'initial', 'completed', 100.0, 3, '2024-01-25 06:00:00', '2024-01-25 06:15:00', '2024-01-25 06:00:00'),
(2, 'SYNC-002', 2, 1, 2, 'initial', 'completed', 100.0, 3, '2024-01-25 09:00:00', '2024-01-25 09:45:00', '2024-01-25 09:00:00'),
(3, 'SYNC-003', 3, 2, 3, 'initial', 'completed', 100.0, 2, '2024-01-25 10:00:00', '2024-01-25 10:20:00', '2024-01-25 10:00:00'),
(4, 'SYNC-004', 4, 1, 4, 'initial', 'completed', 100.0, 3, '2024-01-25 02:00:00', '2024-01-25 02:30:00', '2024-01-25 02:00:00'),
(5, 'SYNC-005', 1, 3, 1, 'initial', 'completed', 100.0, 1, '2024-01-25 06:20:00', '2024-01-25 06:22:00', '2024-01-25 06:20:00'),
(6, 'SYNC-006', 5, 4, 5, 'initial', 'processing', 65.0, 1, '2024-01-25 08:00:00', NULL, '2024-01-25 08:00:00'),
(7, 'SYNC-007', 1, 4, 1, 'update', 'pending', 0.0, 1, NULL, NULL, '2024-01-25 12:00:00');

INSERT INTO platform_assets (id, source_asset_id, platform_id, platform_asset_id, platform_url, synced_version, local_checksum, remote_checksum, sync_status, last_synced_at, last_verified_at) VALUES
(1, 1, 1, 'cdn-12345', 'https://cdn.example.com/v/launch_2024.mp4', 3, 'abc123def456', 'abc123def456', 'synced', '2024-01-25 06:15:00', '2024-01-25 12:00:00'),
(2, 1, 2, 'yt-abcdefg', 'https://youtube.com/watch?v=abcdefg', 3, 'abc123def456', 'abc123def456', 'synced', '2024-01-25 09:45:00', '2024-01-25 12:00:00'),
(3, 2, 3, 'vim-123456', 'https://vimeo.com/123456', 2, 'def456ghi789', 'def456ghi789', 'synced', '2024-01-25 10:20:00', '2024-01-25 12:00:00'),
(4, 1, 4, 's3://backup/launch_2024.mp4', 's3://backup-bucket/media/launch_2024.mp4', 3, 'abc123def456', 'abc123def456', 'synced', '2024-01-25 02:30:00', '2024-01-25 12:00:00'),
(5, 3, 1, 'cdn-67890', 'https://cdn.example.com/i/hero_product.jpg', 1, 'ghi789jkl012', 'ghi789jkl012', 'synced', '2024-01-25 06:22:00', '2024-01-25 12:00:00'),
(6, 4, 5, 'social-98765', 'https://socialhub.com/media/98765', 1, 'jkl012mno345', NULL, 'syncing', '2024-01-25 08:00:00', NULL);

INSERT INTO sync_conflicts (id, platform_asset_id, conflict_type, source_value, target_value, detected_at, resolution, notes) VALUES
(1, 6, 'checksum_mismatch', 'jkl012mno345', 'xyz987', '2024-01-25 08:30:00', 'pending', 'Upload interrupted, needs retry');

INSERT INTO sync_events_log (id, job_id, platform_asset_id, event_type, event_status, message, event_time) VALUES
(1, 1, 1, 'upload_start', 'success', 'Started upload to CDN', '2024-01-25 06:00:00'),
(2, 1, 1, 'upload_complete', 'success', 'Upload completed successfully', '2024-01-25 06:15:00'),
(3, 1, 1, 'verification', 'success', 'Checksum verified', '2024-01-25 06:15:30'),
(4, 6, 6, 'upload_start', 'success', 'Started upload to Social Hub', '2024-01-25 08:00:00'),
(5, 6, 6, 'upload_progress', 'success', 'Upload at 65%', '2024-01-25 08:20:00'),
(6, 6, 6, 'verification', 'failed', 'Checksum mismatch detected', '2024-01-25 08:30:00');
