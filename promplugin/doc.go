// Package promplugin reads the per-queue counts from RabbitMQ's
// rabbitmq_prometheus plugin.
package promplugin
